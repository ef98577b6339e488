//! A Google Cloud Storage XML API server for the tests, in this process, on
//! 127.0.0.1 (its own thread and tokio runtime; stopped on drop). No
//! emulator installable here accepts the XML API writes that
//! `object_store`'s GCS client sends (fake-gcs-server refuses a plain XML
//! PUT), so this one was written from Google's XML API documentation
//! (PUT, GET, HEAD and DELETE object, list objects with `list-type=2`, XML
//! multipart uploads, copy, the `x-goog-*` headers and the XML error
//! format), for the requests `object_store` 0.14 sends.
//!
//! What it does as GCS documents it:
//! - objects carry a generation (a microsecond timestamp, strictly
//!   increasing), a metageneration (1: nothing here changes metadata alone),
//!   an ETag (the quoted MD5 of the data), `Last-Modified`, and the
//!   `Content-*` and `x-goog-meta-*` headers they were written with;
//! - `x-goog-if-generation-match` (0: no live object) and
//!   `x-goog-if-metageneration-match` on PUT, copy, GET, HEAD and DELETE,
//!   `If-Match` / `If-None-Match` on GET and HEAD: 412 `PreconditionFailed`
//!   (304 for `If-None-Match`), checked and applied under one lock;
//! - one `bytes=` range per GET (206 with `Content-Range`; 416
//!   `InvalidRange` when it starts past the end);
//! - DELETE answers 204, or 404 `NoSuchKey` when nothing is there;
//! - listings in name order with `prefix`, `delimiter` (common prefixes),
//!   `start-after`, `max-keys` (at most 1000) and opaque continuation
//!   tokens;
//! - multipart: initiate, parts 1 to 10000 (a part uploaded again replaces
//!   the earlier one), complete with the parts listed in ascending order with
//!   their ETags, all but the last at least 5 MiB, replacing any live
//!   object; abort; unknown upload ids are 404 `NoSuchUpload`;
//! - errors as `<Error><Code>…</Code><Message>…</Message></Error>`.
//!
//! Where it differs from GCS (none of which litevault relies on):
//! - no authentication: the `Authorization` header is ignored (the tests'
//!   client sends an empty bearer token, as with any emulator);
//! - one project, buckets created by [`GcsXml::bucket`] (no bucket API),
//!   no ACLs, no object versioning (a `generation=` GET finds only the live
//!   generation), no CRC32C (`x-goog-hash` carries only `md5=`, and nothing
//!   for objects assembled from parts);
//! - the ETag of an object assembled from parts is written
//!   `"<MD5 of the parts' MD5s>-<parts>"` (S3's form; what GCS's XML API
//!   returns for such an object was not found in its documentation, and
//!   clients treat ETags as opaque);
//! - `If-Modified-Since`, `If-Unmodified-Since` and the
//!   `x-goog-copy-source-*` conditions are refused with 501, not ignored;
//!   any request it does not know is 501 `NotImplemented`;
//! - the default listing page is 1000 entries, as on GCS, but a test may
//!   make it smaller ([`GcsXml::set_list_page`]) to force pagination, since
//!   `object_store` sends no `max-keys` on its own.

mod api;
mod error;
mod store;
mod xml;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use litevault::Replica;

pub use api::Kind;

use super::cloud::GCS_EMULATOR_KEY;

/// The server; stopped (its runtime and connections dropped) on drop.
pub struct GcsXml {
    pub port: u16,
    state: api::Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl GcsXml {
    /// Starts the server on a port the system picks.
    pub fn start() -> GcsXml {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state: api::Shared = Arc::new(Mutex::new(store::Store::new()));
        let app = api::router(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("gcs-xml-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the GCS XML server");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let serve = std::future::IntoFuture::into_future(axum::serve(listener, app));
                    tokio::select! {
                        r = serve => r.expect("the GCS XML server stopped"),
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn the GCS XML server thread");
        GcsXml {
            port,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The base URL (`?endpoint=` of a gs:// URL).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (empty if it is new).
    pub fn bucket(&self, name: &str) -> String {
        self.state.lock().unwrap().create_bucket(name);
        name.to_string()
    }

    /// A replica URL for a bucket and prefix.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!("gs://{bucket}/{prefix}?endpoint={}", self.endpoint())
    }

    /// Opens a replica with the emulator service-account key (no OAuth).
    pub fn replica(&self, bucket: &str, prefix: &str) -> Replica {
        Replica::open_with_gcs_service_account(&self.url(bucket, prefix), GCS_EMULATOR_KEY).unwrap()
    }

    /// `object_store`'s GCS client on a bucket of this server.
    pub fn client(&self, bucket: &str) -> object_store::gcp::GoogleCloudStorage {
        object_store::gcp::GoogleCloudStorageBuilder::new()
            .with_service_account_key(GCS_EMULATOR_KEY)
            .with_bucket_name(bucket)
            .with_base_url(&self.endpoint())
            .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .expect("a GCS client for the test server")
    }

    /// The page size of listings that give no `max-keys` (1000 unless set).
    pub fn set_list_page(&self, entries: usize) {
        self.state.lock().unwrap().list_page = entries;
    }

    /// How many requests of each kind the server has answered.
    pub fn requests(&self) -> BTreeMap<Kind, u64> {
        self.state.lock().unwrap().counts.clone()
    }

    /// How many requests of one kind the server has answered.
    pub fn count(&self, kind: Kind) -> u64 {
        self.requests().get(&kind).copied().unwrap_or(0)
    }

    /// Multipart uploads neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.state.lock().unwrap().open_uploads()
    }
}

impl Drop for GcsXml {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
