//! Fault injection at the object store: a **test facility**, never for
//! production.
//!
//! [`FaultStore`] is a decorator around any real [`ObjectStore`]. At a
//! configured rate, with a seeded generator (the same seed gives the same
//! decisions for the same sequence of requests), it injects:
//!
//! | kind | what the caller sees | applies to |
//! |---|---|---|
//! | `error` | a transient 500-like error; the store did nothing | every request |
//! | `timeout` | the request hangs (`hang_ms`), then fails; a write may or may not have happened | every request |
//! | `slow` | up to `latency_ms` of added latency, then the real answer | every request |
//! | `cut` | the connection breaks during an upload: a PUT, a multipart part, a multipart completion or a DELETE fails either *before* the store got it (nothing happened) or *after* (it happened, the answer was lost) | writes |
//! | `conflict` | a spurious `412 Precondition Failed` to a `PutMode::Update`, or `409`/already-exists to a `PutMode::Create`; the store did nothing | conditional PUTs |
//! | `stale` | a listing that misses the objects modified less than `stale_ms` ago, or a GET that returns the previous version this decorator saw of a small object | LIST, GET |
//!
//! Counts of the faults injected, by kind, are kept in atomic counters
//! ([`FaultStore::counts`]).
//!
//! # From the binary
//!
//! A soak harness running `litevault replicate` or `litevault restore` as
//! subprocesses turns it on with an environment variable, read where replicas
//! are opened ([`crate::Replica::open`]):
//!
//! ```text
//! LITEVAULT_FAULTS="rate=0.1,seed=7,kinds=error,timeout,slow,cut,conflict,stale"
//! ```
//!
//! Keys: `rate` (0 to 1, the share of requests that get a fault), `seed`
//! (u64), `kinds` (a comma-separated list, or `all`, the default),
//! `latency_ms` (the most a `slow` fault adds, default 200), `hang_ms` (how
//! long a `timeout` hangs, default 1000) and `stale_ms` (how young an object
//! a `stale` listing hides, default 2000). A loud warning is logged for every
//! replica opened with faults, and the two commands print the counts at exit
//! as one JSON line on stderr:
//!
//! ```text
//! {"faults":{"requests":812,"error":14,"timeout":9,"slow":13,"cut":11,"conflict":0,"stale":7,"landed_but_failed":10}}
//! ```
//!
//! On `file://` replicas a few things bypass the store and so see no faults:
//! the lease (taken under `flock` on the folder) and restores that read files
//! in place.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    UploadPart,
};

/// The environment variable that turns fault injection on in
/// [`crate::Replica::open`].
pub const FAULTS_ENV: &str = "LITEVAULT_FAULTS";

/// Objects up to this size are remembered for `stale` reads.
const STALE_READ_MAX: u64 = 64 << 10;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// A transient error; nothing happened.
    Error,
    /// A hang, then an error; a write may have happened.
    Timeout,
    /// Added latency, then the real answer.
    Slow,
    /// A broken connection: during an upload, before or after the store got
    /// it; or in the middle of a download's body.
    Cut,
    /// A spurious 412/409 to a conditional write.
    Conflict,
    /// A listing without the newest objects, or a read of an older version.
    Stale,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Error,
        FaultKind::Timeout,
        FaultKind::Slow,
        FaultKind::Cut,
        FaultKind::Conflict,
        FaultKind::Stale,
    ];

    /// The name used in `LITEVAULT_FAULTS` and in the counts.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Error => "error",
            FaultKind::Timeout => "timeout",
            FaultKind::Slow => "slow",
            FaultKind::Cut => "cut",
            FaultKind::Conflict => "conflict",
            FaultKind::Stale => "stale",
        }
    }

    fn parse(s: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// What to inject, and how often.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// The share of requests (0 to 1) that get a fault.
    pub rate: f64,
    /// The seed of the generator.
    pub seed: u64,
    /// The kinds injected; a request gets one of those that apply to it.
    pub kinds: Vec<FaultKind>,
    /// The most latency a `slow` fault adds.
    pub latency: Duration,
    /// How long a `timeout` hangs before it fails.
    pub hang: Duration,
    /// A `stale` listing hides the objects modified less than this long ago.
    pub stale_for: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            rate: 0.1,
            seed: 0,
            kinds: FaultKind::ALL.to_vec(),
            latency: Duration::from_millis(200),
            hang: Duration::from_millis(1000),
            stale_for: Duration::from_millis(2000),
        }
    }
}

/// `LITEVAULT_FAULTS` cannot be used.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FaultConfigError {
    /// A key is not known.
    #[error(
        "{FAULTS_ENV}: unknown key {key:?}; the keys are rate, seed, kinds, latency_ms, hang_ms, stale_ms (e.g. rate=0.1,seed=7,kinds=error,timeout); unset it to run without faults"
    )]
    UnknownKey {
        /// The key as given.
        key: String,
    },
    /// A value cannot be used for its key.
    #[error("{FAULTS_ENV}: {key}={value:?} is not valid: {expected}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What the key takes.
        expected: &'static str,
    },
    /// A kind is not known.
    #[error(
        "{FAULTS_ENV}: unknown fault kind {kind:?}; the kinds are error, timeout, slow, cut, conflict, stale (or all)"
    )]
    UnknownKind {
        /// The kind as given.
        kind: String,
    },
}

impl FaultConfig {
    /// Parses `rate=0.1,seed=7,kinds=error,timeout,...`: comma-separated
    /// `key=value` pairs, where a word without `=` continues the list of
    /// `kinds`.
    ///
    /// ```
    /// use litevault::replica::faults::{FaultConfig, FaultKind};
    /// let c = FaultConfig::parse("rate=0.2,seed=7,kinds=error,cut").unwrap();
    /// assert_eq!(c.seed, 7);
    /// assert_eq!(c.kinds, vec![FaultKind::Error, FaultKind::Cut]);
    /// assert!(FaultConfig::parse("rate=2").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<FaultConfig, FaultConfigError> {
        let mut c = FaultConfig::default();
        let mut kinds: Option<Vec<FaultKind>> = None;
        let mut in_kinds = false;
        let ms = |key: &'static str, v: &str| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| FaultConfigError::BadValue {
                    key,
                    value: v.to_string(),
                    expected: "a whole number of milliseconds",
                })
        };
        for token in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let Some((key, value)) = token.split_once('=') else {
                if !in_kinds {
                    return Err(FaultConfigError::UnknownKey { key: token.into() });
                }
                add_kind(kinds.get_or_insert_with(Vec::new), token)?;
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            in_kinds = key == "kinds";
            match key {
                "rate" => {
                    c.rate = value
                        .parse::<f64>()
                        .ok()
                        .filter(|r| (0.0..=1.0).contains(r))
                        .ok_or_else(|| FaultConfigError::BadValue {
                            key: "rate",
                            value: value.into(),
                            expected: "a number from 0 to 1, e.g. 0.1",
                        })?
                }
                "seed" => {
                    c.seed = value.parse().map_err(|_| FaultConfigError::BadValue {
                        key: "seed",
                        value: value.into(),
                        expected: "a whole number",
                    })?
                }
                "kinds" => add_kind(kinds.get_or_insert_with(Vec::new), value)?,
                "latency_ms" => c.latency = ms("latency_ms", value)?,
                "hang_ms" => c.hang = ms("hang_ms", value)?,
                "stale_ms" => c.stale_for = ms("stale_ms", value)?,
                other => return Err(FaultConfigError::UnknownKey { key: other.into() }),
            }
        }
        if let Some(k) = kinds {
            c.kinds = k;
        }
        Ok(c)
    }

    /// The configuration in [`FAULTS_ENV`], if it is set and not empty.
    pub fn from_env() -> Result<Option<FaultConfig>, FaultConfigError> {
        match std::env::var(FAULTS_ENV) {
            Ok(v) if !v.trim().is_empty() => FaultConfig::parse(&v).map(Some),
            _ => Ok(None),
        }
    }
}

fn add_kind(kinds: &mut Vec<FaultKind>, name: &str) -> Result<(), FaultConfigError> {
    if name == "all" {
        kinds.extend(FaultKind::ALL);
    } else {
        let k = FaultKind::parse(name).ok_or_else(|| FaultConfigError::UnknownKind {
            kind: name.to_string(),
        })?;
        kinds.push(k);
    }
    kinds.dedup();
    Ok(())
}

/// Counts of the faults injected, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FaultCounts {
    /// Requests seen while injection was on.
    pub requests: u64,
    /// `error` faults.
    pub error: u64,
    /// `timeout` faults.
    pub timeout: u64,
    /// `slow` faults.
    pub slow: u64,
    /// `cut` faults (uploads, multipart parts and completions, deletes).
    pub cut: u64,
    /// Spurious `conflict` answers.
    pub conflict: u64,
    /// `stale` listings that hid something, and stale reads served.
    pub stale: u64,
    /// Writes that happened in the store but were reported failed (the
    /// `cut` and `timeout` faults that came after the store got them).
    pub landed_but_failed: u64,
}

impl FaultCounts {
    /// The faults in all (not counting `landed_but_failed`, a detail of
    /// `cut` and `timeout`).
    pub fn total(&self) -> u64 {
        self.error + self.timeout + self.slow + self.cut + self.conflict + self.stale
    }

    fn add(&mut self, o: &FaultCounts) {
        self.requests += o.requests;
        self.error += o.error;
        self.timeout += o.timeout;
        self.slow += o.slow;
        self.cut += o.cut;
        self.conflict += o.conflict;
        self.stale += o.stale;
        self.landed_but_failed += o.landed_but_failed;
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    error: AtomicU64,
    timeout: AtomicU64,
    slow: AtomicU64,
    cut: AtomicU64,
    conflict: AtomicU64,
    stale: AtomicU64,
    landed_but_failed: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> FaultCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FaultCounts {
            requests: l(&self.requests),
            error: l(&self.error),
            timeout: l(&self.timeout),
            slow: l(&self.slow),
            cut: l(&self.cut),
            conflict: l(&self.conflict),
            stale: l(&self.stale),
            landed_but_failed: l(&self.landed_but_failed),
        }
    }

    /// Counts one injected fault, and says so in the debug log (the soak
    /// counts faults of processes it SIGKILLs from these lines).
    fn bump(&self, k: FaultKind) {
        self.of(k).fetch_add(1, Ordering::Relaxed);
        tracing::debug!(kind = k.name(), "fault: injected");
    }

    fn of(&self, k: FaultKind) -> &AtomicU64 {
        match k {
            FaultKind::Error => &self.error,
            FaultKind::Timeout => &self.timeout,
            FaultKind::Slow => &self.slow,
            FaultKind::Cut => &self.cut,
            FaultKind::Conflict => &self.conflict,
            FaultKind::Stale => &self.stale,
        }
    }
}

/// The request a fault is drawn for: it decides which kinds apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Put { conditional: bool },
    StartUpload,
    Part,
    Complete,
    Get,
    List,
    Delete,
}

impl Op {
    fn allows(self, k: FaultKind) -> bool {
        use FaultKind::*;
        match (self, k) {
            (_, Error | Slow) => true,
            (Op::Part, Timeout) => false,
            (_, Timeout) => true,
            (Op::Put { .. } | Op::Part | Op::Complete | Op::Delete | Op::Get, Cut) => true,
            (Op::Put { conditional: true }, Conflict) => true,
            (Op::Get | Op::List, Stale) => true,
            _ => false,
        }
    }
}

/// One decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Error,
    /// Hang, then fail; `landed`: the write happened first.
    Timeout {
        landed: bool,
    },
    Slow(Duration),
    /// Break the connection; `landed`: the store got the request.
    Cut {
        landed: bool,
    },
    Conflict,
    Stale,
}

/// The state shared by a store, its uploads and its streams.
struct Shared {
    config: FaultConfig,
    enabled: AtomicBool,
    /// Writes still to land and then fail, whatever the rate.
    lose_answers: AtomicU64,
    draws: AtomicU64,
    counters: Arc<Counters>,
    /// The last version of each small object read through this store, for
    /// `stale` reads.
    seen: Mutex<HashMap<Path, (ObjectMeta, Attributes, Bytes)>>,
    /// Set: stale listings hide what changed after this moment, instead of
    /// what changed in the last `stale_for`.
    stale_since: Mutex<Option<DateTime<Utc>>>,
}

/// SplitMix64: a small, good-enough, seedable generator.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Shared {
    /// The next number of the sequence of this seed.
    fn draw(&self) -> u64 {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        mix(self.config.seed ^ mix(n))
    }

    fn unit(&self) -> f64 {
        (self.draw() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether request `op` gets a fault, and which.
    fn pick(&self, op: Op) -> Option<Fault> {
        // Lost answers are those of writes.
        if op.allows(FaultKind::Cut)
            && op != Op::Get
            && self
                .lose_answers
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            self.counters.bump(FaultKind::Cut);
            return Some(Fault::Cut { landed: true });
        }
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if self.unit() >= self.config.rate {
            return None;
        }
        let kinds: Vec<FaultKind> = self
            .config
            .kinds
            .iter()
            .copied()
            .filter(|k| op.allows(*k))
            .collect();
        if kinds.is_empty() {
            return None;
        }
        let kind = kinds[(self.draw() % kinds.len() as u64) as usize];
        let landed = self.draw().is_multiple_of(2);
        let fault = match kind {
            FaultKind::Error => Fault::Error,
            FaultKind::Timeout => Fault::Timeout { landed },
            FaultKind::Slow => {
                let max = self.config.latency.as_millis().max(1) as u64;
                Fault::Slow(Duration::from_millis(1 + self.draw() % max))
            }
            FaultKind::Cut => Fault::Cut { landed },
            FaultKind::Conflict => Fault::Conflict,
            // Counted when it hides something.
            FaultKind::Stale => return Some(Fault::Stale),
        };
        self.counters.bump(kind);
        Some(fault)
    }

    fn landed(&self) {
        self.counters
            .landed_but_failed
            .fetch_add(1, Ordering::Relaxed);
    }
}

fn injected(what: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "faults",
        source: what.into(),
    }
}

/// A decorator that injects faults into the requests to a real store.
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultStore")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

impl FaultStore {
    /// Wraps `inner`; injection is on.
    pub fn new(inner: Arc<dyn ObjectStore>, config: FaultConfig) -> FaultStore {
        FaultStore {
            inner,
            shared: Arc::new(Shared {
                config,
                enabled: AtomicBool::new(true),
                lose_answers: AtomicU64::new(0),
                draws: AtomicU64::new(0),
                counters: Arc::new(Counters::default()),
                seen: Mutex::new(HashMap::new()),
                stale_since: Mutex::new(None),
            }),
        }
    }

    /// Turns injection on or off (off: every request goes through as is).
    pub fn set_enabled(&self, on: bool) {
        self.shared.enabled.store(on, Ordering::Relaxed);
    }

    /// Makes the next `n` writes (PUTs, multipart parts and completions,
    /// deletes) happen in the store and then fail as if the connection
    /// broke before the answer came, whether injection is on or not: a
    /// scripted fault for tests of lost answers.
    pub fn lose_next_answers(&self, n: u64) {
        self.shared.lose_answers.store(n, Ordering::Relaxed);
    }

    /// From now on, a stale listing shows the store as it was at `at`: it
    /// hides every object changed after that moment, however long ago
    /// (`None`: those changed in the last `stale_for`, the default). A
    /// scripted staleness for tests that must not depend on how fast they
    /// run.
    pub fn set_stale_since(&self, at: Option<DateTime<Utc>>) {
        if let Ok(mut s) = self.shared.stale_since.lock() {
            *s = at;
        }
    }

    /// The counts of faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.shared.counters.snapshot()
    }

    /// The configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.shared.config
    }

    /// The store behind the faults.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    fn hang(&self) -> Duration {
        self.shared.config.hang
    }
}

/// Runs a write `op` under `fault`.
async fn write_with<T>(
    shared: &Shared,
    fault: Option<Fault>,
    what: &str,
    op: impl std::future::Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    match fault {
        None | Some(Fault::Stale) => op.await,
        Some(Fault::Error) => Err(injected(format!(
            "injected fault: 500 Internal Server Error on {what}"
        ))),
        Some(Fault::Slow(d)) => {
            tokio::time::sleep(d).await;
            op.await
        }
        Some(Fault::Timeout { landed }) => {
            if landed {
                op.await?;
                shared.landed();
            }
            tokio::time::sleep(shared.config.hang).await;
            Err(injected(format!(
                "injected fault: {what} timed out after {:?}",
                shared.config.hang
            )))
        }
        Some(Fault::Cut { landed }) => {
            if landed {
                op.await?;
                shared.landed();
            }
            Err(injected(format!(
                "injected fault: connection reset during {what} ({})",
                if landed {
                    "after the store got it"
                } else {
                    "before the store got it"
                }
            )))
        }
        // Only drawn for conditional PUTs, which answer it themselves.
        Some(Fault::Conflict) => op.await,
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let conditional = matches!(opts.mode, PutMode::Create | PutMode::Update(_));
        let fault = self.shared.pick(Op::Put { conditional });
        if fault == Some(Fault::Conflict) {
            let source = "injected fault: spurious conflict".into();
            return Err(match opts.mode {
                PutMode::Create => object_store::Error::AlreadyExists {
                    path: location.to_string(),
                    source,
                },
                _ => object_store::Error::Precondition {
                    path: location.to_string(),
                    source,
                },
            });
        }
        let what = format!("PUT {location}");
        write_with(
            &self.shared,
            fault,
            &what,
            self.inner.put_opts(location, payload, opts),
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let fault = self.shared.pick(Op::StartUpload);
        match fault {
            Some(Fault::Error) => {
                return Err(injected(format!(
                    "injected fault: 500 Internal Server Error on starting an upload of {location}"
                )));
            }
            Some(Fault::Timeout { .. }) => {
                tokio::time::sleep(self.hang()).await;
                return Err(injected(format!(
                    "injected fault: starting an upload of {location} timed out"
                )));
            }
            Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
            _ => {}
        }
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultUpload {
            inner,
            shared: self.shared.clone(),
            location: location.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let fault = self.shared.pick(Op::Get);
        let plain = options.range.is_none()
            && !options.head
            && options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none();
        match fault {
            Some(Fault::Error) => {
                return Err(injected(format!(
                    "injected fault: 500 Internal Server Error on GET {location}"
                )));
            }
            Some(Fault::Timeout { .. }) => {
                tokio::time::sleep(self.hang()).await;
                return Err(injected(format!(
                    "injected fault: GET {location} timed out after {:?}",
                    self.hang()
                )));
            }
            Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
            Some(Fault::Cut { .. }) if !plain => {
                return Err(injected(format!(
                    "injected fault: connection cut before the answer to GET {location}"
                )));
            }
            Some(Fault::Cut { .. }) => {
                // The answer starts, then the connection breaks half way
                // through the body.
                let res = self.inner.get_opts(location, options).await?;
                let (meta, attributes) = (res.meta.clone(), res.attributes.clone());
                let bytes = res.bytes().await?;
                let len = bytes.len() as u64;
                let half = bytes.slice(..bytes.len() / 2);
                let cut = injected(format!(
                    "injected fault: connection cut in the body of GET {location}"
                ));
                return Ok(GetResult {
                    payload: GetResultPayload::Stream(
                        futures::stream::iter([Ok(half), Err(cut)]).boxed(),
                    ),
                    meta,
                    range: 0..len,
                    attributes,
                    extensions: Default::default(),
                });
            }
            Some(Fault::Stale) if plain => {
                let old = self
                    .shared
                    .seen
                    .lock()
                    .ok()
                    .and_then(|m| m.get(location).cloned());
                if let Some((meta, attributes, bytes)) = old {
                    self.shared.counters.bump(FaultKind::Stale);
                    return Ok(buffered(meta, attributes, bytes));
                }
            }
            _ => {}
        }
        let res = self.inner.get_opts(location, options).await?;
        let remember = plain
            && self.shared.config.kinds.contains(&FaultKind::Stale)
            && res.meta.size <= STALE_READ_MAX;
        if !remember {
            return Ok(res);
        }
        let meta = res.meta.clone();
        let attributes = res.attributes.clone();
        let bytes = res.bytes().await?;
        if let Ok(mut m) = self.shared.seen.lock() {
            m.insert(
                location.clone(),
                (meta.clone(), attributes.clone(), bytes.clone()),
            );
        }
        Ok(buffered(meta, attributes, bytes))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = self.inner.clone();
        let shared = self.shared.clone();
        locations
            .then(move |location| {
                let inner = inner.clone();
                let shared = shared.clone();
                async move {
                    let location = location?;
                    let fault = shared.pick(Op::Delete);
                    let what = format!("DELETE {location}");
                    let one = location.clone();
                    write_with(&shared, fault, &what, async move {
                        let mut s = inner.delete_stream(futures::stream::iter([Ok(one)]).boxed());
                        match s.next().await {
                            Some(r) => r.map(|_| ()),
                            None => Ok(()),
                        }
                    })
                    .await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let fault = self.shared.pick(Op::List);
        let what = format!("LIST {}", prefix.map(|p| p.as_ref()).unwrap_or(""));
        let hang = self.hang();
        match fault {
            Some(Fault::Error) => futures::stream::once(async move {
                Err(injected(format!(
                    "injected fault: 500 Internal Server Error on {what}"
                )))
            })
            .boxed(),
            Some(Fault::Timeout { .. }) => futures::stream::once(async move {
                tokio::time::sleep(hang).await;
                Err(injected(format!(
                    "injected fault: {what} timed out after {hang:?}"
                )))
            })
            .boxed(),
            Some(Fault::Slow(d)) => {
                let inner = self.inner.list(prefix);
                futures::stream::once(async move {
                    tokio::time::sleep(d).await;
                    inner
                })
                .flatten()
                .boxed()
            }
            Some(Fault::Stale) => {
                let cutoff = self.shared.stale_cutoff();
                let counters = self.shared.counters.clone();
                let mut counted = false;
                self.inner
                    .list(prefix)
                    .filter(move |m| {
                        let hide = matches!(m, Ok(m) if m.last_modified > cutoff);
                        if hide && !counted {
                            counted = true;
                            counters.bump(FaultKind::Stale);
                        }
                        futures::future::ready(!hide)
                    })
                    .boxed()
            }
            _ => self.inner.list(prefix),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let fault = self.shared.pick(Op::List);
        let what = format!("LIST {}", prefix.map(|p| p.as_ref()).unwrap_or(""));
        match fault {
            Some(Fault::Error) => Err(injected(format!(
                "injected fault: 500 Internal Server Error on {what}"
            ))),
            Some(Fault::Timeout { .. }) => {
                tokio::time::sleep(self.hang()).await;
                Err(injected(format!("injected fault: {what} timed out")))
            }
            Some(Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                self.inner.list_with_delimiter(prefix).await
            }
            Some(Fault::Stale) => {
                let mut r = self.inner.list_with_delimiter(prefix).await?;
                let cutoff = self.shared.stale_cutoff();
                let before = r.objects.len();
                r.objects.retain(|m| m.last_modified <= cutoff);
                if r.objects.len() < before {
                    self.shared.counters.bump(FaultKind::Stale);
                }
                Ok(r)
            }
            _ => self.inner.list_with_delimiter(prefix).await,
        }
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

impl Shared {
    /// What a stale listing hides: the objects changed after this.
    fn stale_cutoff(&self) -> DateTime<Utc> {
        match self.stale_since.lock().ok().and_then(|s| *s) {
            Some(at) => at,
            None => stale_cutoff(&self.config),
        }
    }
}

fn stale_cutoff(c: &FaultConfig) -> chrono::DateTime<Utc> {
    // A staleness longer than the calendar hides everything.
    chrono::Duration::from_std(c.stale_for)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
}

/// A GET answer from bytes in memory.
fn buffered(meta: ObjectMeta, attributes: Attributes, bytes: Bytes) -> GetResult {
    let len = bytes.len() as u64;
    GetResult {
        payload: GetResultPayload::Stream(futures::stream::iter([Ok(bytes)]).boxed()),
        meta,
        range: 0..len,
        attributes,
        extensions: Default::default(),
    }
}

/// A multipart upload whose parts and completion may fail.
struct FaultUpload {
    inner: Box<dyn MultipartUpload>,
    shared: Arc<Shared>,
    location: Path,
}

impl fmt::Debug for FaultUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultUpload")
            .field("location", &self.location)
            .finish()
    }
}

#[async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let fault = self.shared.pick(Op::Part);
        let what = format!("a part of the upload of {}", self.location);
        let shared = self.shared.clone();
        // A part that is not sent at all is not handed to the inner upload.
        let send = !matches!(
            fault,
            Some(Fault::Error) | Some(Fault::Cut { landed: false })
        );
        let part = send.then(|| self.inner.put_part(data));
        Box::pin(async move {
            let op = async move {
                match part {
                    Some(p) => p.await,
                    None => Ok(()),
                }
            };
            write_with(&shared, fault, &what, op).await
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let fault = self.shared.pick(Op::Complete);
        let what = format!("completing the upload of {}", self.location);
        write_with(&self.shared, fault, &what, self.inner.complete()).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

mod env;
pub(crate) use env::wrap_from_env;
pub use env::{ExitReport, env_counts, exit_line};

#[cfg(test)]
mod tests;
