//! The HTTP surface (axum): health, readiness, Prometheus metrics, status
//! JSON, the sidecar's durable sync and a small status page.
//!
//! | route | what it answers |
//! |---|---|
//! | `GET /healthz` | 200 while the process serves requests (never needs the token) |
//! | `GET /readyz` | 200 when every database is replicating and every replica lags less than [`ServerOptions::readyz_max_lag`]; 503 and a JSON list of reasons otherwise |
//! | `GET /metrics` | Prometheus text format ([`metrics::render`]) |
//! | `GET /v1/status` | JSON: one [`DbStatus`] per database |
//! | `POST /v1/sync?db=NAME&wait=true&timeout=30s` | ships what is committed; with `wait=true` answers once every replica holds it (504 after the timeout, the data still safe locally) |
//! | `GET /v1/lag` | the lag samples (one a second) the chart draws |
//! | `GET /v1/files` | recent files and restore points of every replica (listings cached for [`ServerOptions::files_max_age`]) |
//! | `GET /` | the status page: inline HTML, CSS, JS and SVG, no external assets |
//!
//! Handle and driver: build a [`ServerState`] from running [`Replicator`]s,
//! then drive [`serve`] (or [`Server::run`]) with a shutdown future. The
//! listener is bound by [`Server::bind`], or passed in: by systemd socket
//! activation ([`systemd`], [`Server::from_listener`]) or to [`serve`].
//!
//! ```no_run
//! # async fn demo(replicator: litevault::Replicator) -> Result<(), Box<dyn std::error::Error>> {
//! use litevault::server::{Server, ServerOptions, ServerState};
//! let state = ServerState::new(vec![replicator], ServerOptions::default());
//! let server = Server::bind("127.0.0.1:9090".parse()?, state).await?;
//! server.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(()) }
//! ```

pub mod metrics;
mod page;
pub mod points;
pub mod systemd;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Replicator;
use crate::replica::LtxFileInfo;
use crate::replicate::{DbStatus, lock_or_recover};

/// The environment variable holding the bearer token.
pub const TOKEN_ENV: &str = "LITEVAULT_HTTP_TOKEN";

/// Errors starting or running the HTTP server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A non-loopback address without a token.
    #[error(
        "refusing to serve HTTP on {addr} without a token: anyone who can reach it could read the status and trigger syncs. Set {TOKEN_ENV} (clients then send `Authorization: Bearer <token>`), or bind to 127.0.0.1"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The token is set but empty or not a valid header value.
    #[error(
        "{TOKEN_ENV} is set but {problem}; give a non-empty token of visible ASCII characters, or unset it"
    )]
    BadToken {
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The address could not be parsed.
    #[error("invalid HTTP address {addr:?}: {problem}; write e.g. 127.0.0.1:9090 or :9090")]
    InvalidAddr {
        /// The address as written.
        addr: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// `systemd` was given as the address, and no usable socket was passed
    /// (see [`systemd`]).
    #[error("cannot serve HTTP on the socket passed by the service manager: {problem}")]
    Activation {
        /// What is missing or wrong.
        problem: String,
    },
    /// The server failed while running.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
    /// The status of the databases could not be taken.
    #[error("the status could not be taken: {0}; this is a bug, please report it with the log")]
    StatusUnavailable(String),
}

impl From<crate::task::TaskFailed> for ServerError {
    fn from(e: crate::task::TaskFailed) -> Self {
        ServerError::StatusUnavailable(e.to_string())
    }
}

/// Settings of the HTTP server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// `/readyz` answers 503 once a replica lags more than this.
    pub readyz_max_lag: Duration,
    /// Bearer token guarding every route except `/healthz`; required to bind
    /// a non-loopback address.
    pub token: Option<String>,
    /// How often the lag is sampled for the chart.
    pub sample_interval: Duration,
    /// How many lag samples are kept per replica.
    pub history: usize,
    /// How long a replica listing (recent files, restore points) is reused
    /// before the next page load lists the replica again.
    pub files_max_age: Duration,
    /// `POST /v1/sync?wait=true` gives up (504) after this unless the request
    /// sets `timeout`.
    pub sync_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            readyz_max_lag: crate::defaults::READYZ_MAX_LAG,
            token: None,
            sample_interval: Duration::from_secs(1),
            history: 600,
            files_max_age: Duration::from_secs(30),
            sync_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerOptions {
    /// Sets the token from [`TOKEN_ENV`] when it is set.
    pub fn token_from_env(mut self) -> Self {
        if let Some(t) = std::env::var_os(TOKEN_ENV) {
            self.token = Some(t.to_string_lossy().into_owned());
        }
        self
    }
}

/// Parses a bind address: `127.0.0.1:9090`, `[::1]:9090`, `localhost:9090`,
/// or `:9090` (Litestream's form, here 127.0.0.1: a non-loopback address
/// must be written out, and needs a token).
pub fn parse_addr(s: &str) -> Result<SocketAddr, ServerError> {
    let bad = |problem: &str| ServerError::InvalidAddr {
        addr: s.to_string(),
        problem: problem.to_string(),
    };
    let t = s.trim();
    let (host, port) = t
        .rsplit_once(':')
        .ok_or_else(|| bad("no port (the part after the last `:`)"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h
            .parse::<IpAddr>()
            .map_err(|_| bad("the host is not an IP address (or `localhost`)"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// The token rule: a non-loopback address needs a token, and a token must be
/// usable in a header.
pub fn check_bind(addr: SocketAddr, opts: &ServerOptions) -> Result<(), ServerError> {
    if let Some(t) = &opts.token {
        if t.is_empty() {
            return Err(ServerError::BadToken { problem: "empty" });
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ServerError::BadToken {
                problem: "holds spaces or non-ASCII characters",
            });
        }
    } else if !addr.ip().is_loopback() {
        return Err(ServerError::TokenRequired { addr });
    }
    Ok(())
}

/// One lag sample: when (Unix ms) and the lag in ms.
type Sample = (i64, u64);

/// When a database's replicas were listed, and what they hold.
type Listing = (Instant, Vec<ReplicaFiles>);

/// What the server serves: the replicators, the lag history and the cached
/// listings. Cheap to clone.
#[derive(Clone)]
pub struct ServerState {
    inner: Arc<StateInner>,
}

struct StateInner {
    /// The databases served, in the order given (then added). Taken with
    /// [`lock_or_recover`] only to copy or change the list.
    dbs: Mutex<Vec<Arc<Served>>>,
    opts: ServerOptions,
}

/// One database the server serves.
struct Served {
    r: Replicator,
    /// Per replica. Samples for display: each critical section pushes or
    /// pops whole samples or clones the rings, so the rings stay valid if
    /// one is cut short by a panic, and the lock is taken with
    /// [`lock_or_recover`].
    lag: Mutex<Vec<VecDeque<Sample>>>,
    /// The last listing of each replica.
    files: tokio::sync::Mutex<Option<Listing>>,
    /// Uploads started by `/v1/sync`, one at a time.
    push: Arc<PushQueue>,
}

impl Served {
    fn new(r: Replicator) -> Arc<Served> {
        Arc::new(Served {
            lag: Mutex::new(vec![VecDeque::new(); r.replicas().len()]),
            files: tokio::sync::Mutex::new(None),
            push: Arc::new(PushQueue::default()),
            r,
        })
    }
}

impl ServerState {
    /// Serves these databases (their replicators should be running: see
    /// [`Replicator::run`]).
    pub fn new(replicators: Vec<Replicator>, opts: ServerOptions) -> ServerState {
        ServerState {
            inner: Arc::new(StateInner {
                dbs: Mutex::new(replicators.into_iter().map(Served::new).collect()),
                opts,
            }),
        }
    }

    /// Serves one more database (one a watched directory gained), in place
    /// of one at the same path if there is one.
    pub fn add(&self, r: Replicator) {
        let mut dbs = lock_or_recover(&self.inner.dbs);
        dbs.retain(|d| d.r.path() != r.path());
        dbs.push(Served::new(r));
    }

    /// Stops serving the database at `path` (removed from a watched
    /// directory).
    pub fn remove(&self, path: &std::path::Path) {
        lock_or_recover(&self.inner.dbs).retain(|d| d.r.path() != path);
    }

    /// The databases served now.
    fn dbs(&self) -> Vec<Arc<Served>> {
        lock_or_recover(&self.inner.dbs).clone()
    }

    /// The options.
    pub fn options(&self) -> &ServerOptions {
        &self.inner.opts
    }

    /// The status of every database, taken on a blocking thread: a status
    /// waits for the database lock, which a long resync or checkpoint holds.
    pub async fn statuses(&self) -> Result<Vec<DbStatus>, ServerError> {
        Ok(Self::statuses_of(self.dbs()).await?.1)
    }

    async fn statuses_of(
        dbs: Vec<Arc<Served>>,
    ) -> Result<(Vec<Arc<Served>>, Vec<DbStatus>), crate::task::TaskFailed> {
        crate::task::blocking(move || {
            let st = dbs.iter().map(|d| d.r.status()).collect();
            (dbs, st)
        })
        .await
    }

    /// Takes one lag sample of every replica (the server does it every
    /// [`ServerOptions::sample_interval`]; call it yourself when you mount
    /// [`router`] in your own app).
    pub async fn sample_lag(&self) {
        let now = Utc::now().timestamp_millis();
        let (dbs, statuses) = match Self::statuses_of(self.dbs()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "no lag sample this time");
                return;
            }
        };
        let cap = self.inner.opts.history.max(1);
        for (d, st) in dbs.iter().zip(&statuses) {
            let mut lag = lock_or_recover(&d.lag);
            for (i, rs) in st.replicas.iter().enumerate() {
                // One ring per replica, made in `Served::new`.
                let Some(ring) = lag.get_mut(i) else {
                    continue;
                };
                if ring.len() >= cap {
                    ring.pop_front();
                }
                ring.push_back((now, rs.lag_ms));
            }
        }
    }

    /// The database a `db=` parameter names: its path as given, its file
    /// name (`app.db`) or its file name without extension (`app`).
    fn find(&self, name: &str) -> Result<Arc<Served>, (StatusCode, serde_json::Value)> {
        let mut matches: Vec<Arc<Served>> = self
            .dbs()
            .into_iter()
            .filter(|d| names_db(d.r.path(), name))
            .collect();
        match matches.len() {
            1 => Ok(matches.remove(0)),
            0 => Err((
                StatusCode::NOT_FOUND,
                json!({
                    "error": format!("no database named {name:?}; known: {}", self.known()),
                }),
            )),
            _ => Err((
                StatusCode::BAD_REQUEST,
                json!({
                    "error": format!("{name:?} names several databases; give the path: {}", self.known()),
                }),
            )),
        }
    }

    fn known(&self) -> String {
        self.dbs()
            .iter()
            .map(|d| d.r.path().display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Uploads requested over HTTP: at most one running and one queued per
/// database, so a burst of requests (or a replica that keeps failing) does
/// not pile up uploads. The queued one starts after every request that saw
/// it queued had taken its commits into the local store, so it covers them
/// all (group commit).
#[derive(Default)]
struct PushQueue {
    running: tokio::sync::Mutex<()>,
    queued: AtomicBool,
}

impl PushQueue {
    fn request(self: &Arc<Self>, r: &Replicator) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        let r = r.clone();
        tokio::spawn(async move {
            let _running = me.running.lock().await;
            me.queued.store(false, Ordering::Release);
            if let Err(e) = r.sync_all().await {
                tracing::debug!(error = %e, "upload requested over HTTP failed; the replicator retries");
            }
        });
    }
}

fn names_db(path: &Path, name: &str) -> bool {
    path == Path::new(name)
        || path.file_name().is_some_and(|f| f == name)
        || path.file_stem().is_some_and(|f| f == name)
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    state: ServerState,
}

impl Server {
    /// Checks the token rule, then binds `addr` (port 0: any free port).
    pub async fn bind(addr: SocketAddr, state: ServerState) -> Result<Server, ServerError> {
        check_bind(addr, &state.inner.opts)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Server { listener, state })
    }

    /// Serves on a listener bound elsewhere (by whoever started this
    /// process: [`systemd::take_listener`]); the token rule is checked on
    /// its address. Call it inside the Tokio runtime.
    pub fn from_listener(
        listener: std::net::TcpListener,
        state: ServerState,
    ) -> Result<Server, ServerError> {
        check_bind(listener.local_addr()?, &state.inner.opts)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        Ok(Server { listener, state })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        serve(self.listener, self.state, shutdown).await
    }
}

/// Serves `state` on `listener` until `shutdown` resolves (then finishes the
/// requests in flight). Refuses a non-loopback listener without a token.
pub async fn serve(
    listener: TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    check_bind(listener.local_addr()?, &state.inner.opts)?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let sampler = {
        let state = state.clone();
        let every = state
            .inner
            .opts
            .sample_interval
            .max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    // The only change is to true (or the sender is gone).
                    _ = stop_rx.changed() => break,
                    _ = tick.tick() => {}
                }
                state.sample_lag().await;
            }
        })
    };
    let app = router(state);
    let res = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    sampler.abort();
    Ok(res?)
}

/// The routes, for embedding in another axum app (the lag chart then needs
/// [`ServerState::sample_lag`] called every second; [`serve`] does it).
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/", get(page_handler))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/v1/status", get(status))
        .route("/v1/sync", post(sync))
        .route("/v1/lag", get(lag))
        .route("/v1/files", get(files))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Compares without an early exit, so the time taken does not tell how much
/// of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn require_token(State(state): State<ServerState>, req: Request, next: Next) -> Response {
    let Some(token) = &state.inner.opts.token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
        return next.run(req).await;
    }
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({
            "error": format!("missing or wrong bearer token: send `Authorization: Bearer <token>` with the token in {TOKEN_ENV}"),
        })),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Why the server is not ready, one reason per database or replica; empty
/// when ready.
pub fn not_ready_reasons(statuses: &[DbStatus], max_lag: Duration) -> Vec<String> {
    let mut reasons = Vec::new();
    for st in statuses {
        if !st.running {
            reasons.push(format!(
                "{}: not replicating (the replicator is stopped)",
                st.db.display()
            ));
        }
        for r in &st.replicas {
            if u128::from(r.lag_ms) > max_lag.as_millis() {
                let mut s = format!(
                    "{} -> {}: lag {:.1}s exceeds {:.1}s",
                    st.db.display(),
                    r.url,
                    r.lag_ms as f64 / 1000.0,
                    max_lag.as_secs_f64()
                );
                if let Some(e) = &r.last_error {
                    s.push_str(&format!(" (last error: {e})"));
                }
                reasons.push(s);
            }
        }
    }
    reasons
}

fn status_error(e: ServerError) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({"error": e.to_string()})),
    )
        .into_response()
}

async fn readyz(State(state): State<ServerState>) -> Response {
    let statuses = match state.statuses().await {
        Ok(s) => s,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"ready": false, "reasons": [e.to_string()]})),
            )
                .into_response();
        }
    };
    let reasons = not_ready_reasons(&statuses, state.inner.opts.readyz_max_lag);
    if reasons.is_empty() {
        (StatusCode::OK, axum::Json(json!({"ready": true}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "reasons": reasons})),
        )
            .into_response()
    }
}

async fn metrics_handler(State(state): State<ServerState>) -> Response {
    let statuses = match state.statuses().await {
        Ok(s) => s,
        Err(e) => return status_error(e),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    (headers, metrics::render(&statuses)).into_response()
}

async fn status(State(state): State<ServerState>) -> Response {
    match state.statuses().await {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => status_error(e),
    }
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": msg}))).into_response()
}

async fn sync(
    State(state): State<ServerState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let all = state.dbs();
    let served = match q.get("db") {
        Some(name) => match state.find(name) {
            Ok(d) => d,
            Err((code, body)) => return (code, axum::Json(body)).into_response(),
        },
        None if all.len() == 1 => all[0].clone(),
        None => {
            return bad_request(format!(
                "several databases are replicated: name one with ?db= ({})",
                state.known()
            ));
        }
    };
    let wait = match q.get("wait").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(w) => return bad_request(format!("wait={w:?}: write wait=true or wait=false")),
    };
    let timeout = match q.get("timeout") {
        None => state.inner.opts.sync_timeout,
        Some(t) => match crate::units::parse_duration(t) {
            Ok(d) => d,
            Err(e) => return bad_request(format!("timeout={t:?}: {e}")),
        },
    };
    let r = served.r.clone();
    let db = r.path().display().to_string();
    // Everything committed before this request, durable in the local store
    // from here on: a timeout below loses nothing, it is uploaded later.
    let txid = match r.take_committed().await {
        Ok(t) => t,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": format!("{db}: {e}")})),
            )
                .into_response();
        }
    };
    // Upload at once rather than at the next sync interval.
    served.push.request(&r);
    if !wait {
        return (
            StatusCode::ACCEPTED,
            axum::Json(json!({"db": db, "txid": txid, "replicated": false})),
        )
            .into_response();
    }
    match tokio::time::timeout(timeout, r.wait_replicated(txid)).await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({"db": db, "txid": txid, "replicated": true})),
        )
            .into_response(),
        Err(_) => {
            let st = {
                let r = r.clone();
                match crate::task::blocking(move || r.status()).await {
                    Ok(st) => st,
                    Err(e) => return status_error(e.into()),
                }
            };
            let behind: Vec<_> = st
                .replicas
                .iter()
                .filter(|x| x.txid < txid)
                .map(|x| json!({"url": x.url, "txid": x.txid, "last_error": x.last_error}))
                .collect();
            (
                StatusCode::GATEWAY_TIMEOUT,
                axum::Json(json!({
                    "error": format!(
                        "{db}: not every replica holds TXID {txid} after {:.1}s; it is safe in the local store and {}: retry, or raise timeout=",
                        timeout.as_secs_f64(),
                        if st.running {
                            "keeps being uploaded"
                        } else {
                            "is uploaded once the replicator runs again"
                        }
                    ),
                    "db": db,
                    "txid": txid,
                    "replicas_behind": behind,
                })),
            )
                .into_response()
        }
    }
}

#[derive(Serialize)]
struct LagSeries {
    url: String,
    /// `[unix_ms, lag_seconds]` pairs, oldest first.
    samples: Vec<(i64, f64)>,
}

async fn lag(State(state): State<ServerState>) -> axum::Json<serde_json::Value> {
    let dbs: Vec<_> = state
        .dbs()
        .iter()
        .map(|d| {
            let r = &d.r;
            let per_replica = lock_or_recover(&d.lag).clone();
            let series: Vec<LagSeries> = r
                .replicas()
                .iter()
                .zip(per_replica)
                .map(|(rep, ring)| LagSeries {
                    url: rep.to_string(),
                    samples: ring
                        .into_iter()
                        .map(|(t, ms)| (t, ms as f64 / 1000.0))
                        .collect(),
                })
                .collect();
            json!({"db": r.path().display().to_string(), "replicas": series})
        })
        .collect();
    axum::Json(json!({
        "interval_ms": state.inner.opts.sample_interval.as_millis() as u64,
        "dbs": dbs,
    }))
}

/// How many recent files the page shows per replica.
const RECENT_FILES: usize = 20;

/// The cached listing of one replica.
#[derive(Clone, Serialize)]
struct ReplicaFiles {
    url: String,
    listed_at: DateTime<Utc>,
    error: Option<String>,
    files_total: usize,
    /// Newest first.
    recent: Vec<LtxFileInfo>,
    restore_points: Option<points::RestorePoints>,
}

async fn list_replica(replica: &crate::Replica) -> ReplicaFiles {
    let listed_at = Utc::now();
    let res = tokio::time::timeout(Duration::from_secs(10), replica.list_all()).await;
    let (files, error) = match res {
        Ok(Ok(f)) => (f, None),
        Ok(Err(e)) => (Vec::new(), Some(e.to_string())),
        Err(_) => (Vec::new(), Some("listing took more than 10s".to_string())),
    };
    let mut recent = files.clone();
    recent.sort_by_key(|f| std::cmp::Reverse((f.max_txid, f.level)));
    recent.truncate(RECENT_FILES);
    ReplicaFiles {
        url: replica.to_string(),
        listed_at,
        error,
        files_total: files.len(),
        recent,
        restore_points: points::RestorePoints::from_listing(&files),
    }
}

async fn files(State(state): State<ServerState>) -> axum::Json<serde_json::Value> {
    let max_age = state.inner.opts.files_max_age;
    let mut dbs = Vec::new();
    for d in state.dbs() {
        let r = &d.r;
        // Held while listing: concurrent page loads share one listing.
        let mut c = d.files.lock().await;
        let fresh = c.as_ref().is_some_and(|(at, _)| at.elapsed() < max_age);
        if !fresh {
            let listings =
                futures::future::join_all(r.replicas().into_iter().map(list_replica)).await;
            *c = Some((Instant::now(), listings));
        }
        let listings = c.as_ref().map(|(_, l)| l.clone()).unwrap_or_default();
        dbs.push(json!({"db": r.path().display().to_string(), "replicas": listings}));
    }
    axum::Json(json!({"max_age_seconds": max_age.as_secs_f64(), "dbs": dbs}))
}

async fn page_handler() -> Html<&'static str> {
    Html(page::PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_default_to_loopback() {
        assert_eq!(
            parse_addr(":9090").unwrap(),
            "127.0.0.1:9090".parse().unwrap()
        );
        assert_eq!(
            parse_addr("localhost:1").unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(
            parse_addr("0.0.0.0:9090").unwrap(),
            "0.0.0.0:9090".parse().unwrap()
        );
        for bad in ["9090", "host:80", "127.0.0.1:http", "127.0.0.1:70000"] {
            let e = parse_addr(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("127.0.0.1:9090"), "{e}");
        }
    }

    #[test]
    fn non_loopback_needs_a_token() {
        let open = ServerOptions::default();
        let any: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        let e = check_bind(any, &open).unwrap_err();
        assert!(matches!(e, ServerError::TokenRequired { .. }));
        assert!(e.to_string().contains(TOKEN_ENV), "{e}");
        check_bind("127.0.0.1:9090".parse().unwrap(), &open).unwrap();
        check_bind("[::1]:9090".parse().unwrap(), &open).unwrap();
        let with = ServerOptions {
            token: Some("s3cret".into()),
            ..ServerOptions::default()
        };
        check_bind(any, &with).unwrap();
        let empty = ServerOptions {
            token: Some(String::new()),
            ..ServerOptions::default()
        };
        assert!(matches!(
            check_bind(any, &empty),
            Err(ServerError::BadToken { .. })
        ));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn db_names_match_path_file_name_or_stem() {
        let p = Path::new("/data/app.db");
        assert!(names_db(p, "/data/app.db"));
        assert!(names_db(p, "app.db"));
        assert!(names_db(p, "app"));
        assert!(!names_db(p, "other"));
    }
}
