//! `litevault replicate DB URL [URL...]` or `litevault replicate --config F`,
//! optionally supervising the app with `--exec CMD`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use tokio::sync::watch;

use litevault::config::{self, Config, LoadOptions};
use litevault::replica::keeper::{self, Keeper};
use litevault::server::{self, Server, ServerOptions, ServerState};
use litevault::units::parse_duration;
use litevault::{ReplicateOptions, Replicator, replica::Replica};
use std::sync::Arc;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The SQLite database (in WAL mode). Without it, the databases of the
    /// config file are replicated.
    db: Option<PathBuf>,
    /// Replica URLs (one or more; each keeps its own position): file:///dir,
    /// s3://bucket/path?endpoint=..&region=..&force-path-style=true, gs://, abs://
    urls: Vec<String>,
    /// The config file (default: $LITEVAULT_CONFIG, ./litevault.yml,
    /// /etc/litevault.yml); used when no DB is given.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Start this command (with `sh -c`) once the databases are open, forward
    /// SIGINT/SIGTERM to it, and when it exits do a final sync and exit with
    /// its exit code. Overrides the config's `exec`.
    #[arg(long, value_name = "CMD", conflicts_with = "once")]
    exec: Option<String>,
    /// Ship what is committed now, then exit.
    #[arg(long)]
    once: bool,
    /// How often to look at the WAL for new commits where the kernel's
    /// change notifications (inotify) are not available, and how often to
    /// check beside them (`250ms`, `1s`; at least 1 ms). Overrides the
    /// config's `poll-interval`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    poll_interval: Option<Duration>,
    /// Poll the WAL every `--poll-interval` instead of waking on the
    /// kernel's change notifications (inotify).
    #[arg(long)]
    no_notifications: bool,
    /// PASSIVE checkpoint once the WAL holds this many frames (0: never).
    #[arg(long)]
    checkpoint_pages: Option<u64>,
    /// TRUNCATE checkpoint once the WAL file reaches this many MiB (0: never).
    #[arg(long)]
    truncate_mib: Option<u64>,
    /// Least time between two uploads to a replica under a steady load
    /// (`500ms`, `1s`; `0s` ships every commit at once).
    #[arg(long, value_parser = parse_duration)]
    sync_interval: Option<Duration>,
    /// Write the LTX format's standard checksum fields instead of the
    /// default Litestream-compatible files (the NoChecksum flag, with
    /// litevault's checksums in the reserved header bytes). Released
    /// Litestream binaries (0.5.17) can neither restore nor continue such a
    /// replica. Overrides the config's `litestream-compat`.
    #[arg(long)]
    standard_checksums: bool,
    /// Litestream-compatible files (the default; kept for scripts that
    /// still pass it).
    #[arg(long, hide = true, conflicts_with = "standard_checksums")]
    litestream_compat: bool,
    /// Replace a replica lease whose holder stopped renewing it (after it
    /// expired).
    #[arg(long)]
    takeover: bool,
    /// At start, wait this long for a lease another replicator holds (its
    /// release at a clean stop) instead of failing at once: for overlapping
    /// deploys, where the new instance starts before the old one stops
    /// (`5m`; 0: fail at once). Overrides the config's `lease.wait`.
    #[arg(long, value_parser = parse_duration)]
    lease_wait: Option<Duration>,
    /// With --exec: while the databases open (waiting for the lease, then
    /// restoring what the old instance shipped), listen on the app's
    /// address and answer every request with 503 and Retry-After: 1, so a
    /// platform whose TCP startup probe gates the old instance's stop
    /// (Cloud Run) stops it. Closed before the app starts
    /// (`0.0.0.0:8080`).
    #[arg(long, value_name = "HOST:PORT")]
    placeholder_addr: Option<String>,
    /// Do not take the replica lease (only when something else guarantees a
    /// single writer).
    #[arg(long)]
    no_lease: bool,
    /// Time allowed for the final sync at shutdown (`30s`).
    #[arg(long, value_parser = parse_duration)]
    shutdown_timeout: Option<Duration>,
    /// Serve /healthz, /readyz, /metrics, /v1/status, /v1/sync and a status
    /// page on this address (`127.0.0.1:9090`; `:9090` is 127.0.0.1 too).
    /// Any other address needs $LITEVAULT_HTTP_TOKEN. `systemd`: on the
    /// listening socket passed by systemd socket activation (LISTEN_PID,
    /// LISTEN_FDS, descriptor 3). Overrides the config's `addr` / `http.addr`.
    #[arg(long, value_name = "HOST:PORT|systemd")]
    addr: Option<String>,
    /// Compaction intervals of levels 1, 2, ... (`30s,5m,1h`; `none`: no
    /// compaction).
    #[arg(long, value_parser = parse_levels)]
    levels: Option<Levels>,
    /// How often a snapshot (level 9) is taken (`24h`; `0s`: never).
    #[arg(long, value_parser = parse_duration)]
    snapshot_interval: Option<Duration>,
    /// How long snapshots, and what restores any point after the oldest, are
    /// kept (`24h`).
    #[arg(long, value_parser = parse_duration)]
    snapshot_retention: Option<Duration>,
    /// How long level-0 files are kept once compacted into level 1 (`5m`).
    #[arg(long, value_parser = parse_duration)]
    l0_retention: Option<Duration>,
    /// Never delete files from the replicas.
    #[arg(long)]
    no_retention: bool,
}

impl Args {
    /// The config file this command reads: only when no DB is given.
    pub fn config_file(&self) -> Option<super::logging::ConfigFile<'_>> {
        self.db
            .is_none()
            .then(|| super::logging::ConfigFile::new(self.config.as_deref()))
    }
}

/// Compaction intervals given on the command line.
#[derive(Clone, Debug)]
struct Levels(Vec<Duration>);

fn parse_levels(s: &str) -> Result<Levels, String> {
    if s == "none" {
        return Ok(Levels(Vec::new()));
    }
    s.split(',')
        .map(|p| parse_duration(p.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map(Levels)
        .map_err(|e| format!("{e} (write the intervals as `30s,5m,1h`, or `none`)"))
}

impl Args {
    /// Applies the command-line flags over options from defaults or the
    /// config file.
    fn apply(&self, opts: &mut ReplicateOptions) {
        if self.no_notifications {
            opts.change_notifications = false;
        }
        if let Some(d) = self.poll_interval {
            opts.poll_interval = d.max(Duration::from_millis(1));
        }
        if let Some(p) = self.checkpoint_pages {
            opts.checkpoint.min_pages = p;
        }
        if let Some(m) = self.truncate_mib {
            opts.checkpoint.truncate_bytes = m << 20;
        }
        if let Some(d) = self.sync_interval {
            opts.sync_interval = d;
        }
        if let Some(d) = self.shutdown_timeout {
            opts.shutdown_timeout = d;
        }
        if self.standard_checksums {
            opts.litestream_compat = false;
        } else if self.litestream_compat {
            opts.litestream_compat = true;
        }
        let r = &mut opts.retention;
        if let Some(l) = &self.levels {
            r.levels = l.0.clone();
        }
        if let Some(d) = self.snapshot_interval {
            r.snapshot_interval = (!d.is_zero()).then_some(d);
        }
        if let Some(d) = self.snapshot_retention {
            r.snapshot_retention = d;
        }
        if let Some(d) = self.l0_retention {
            r.l0_retention = d;
        }
        if self.no_retention {
            r.enabled = false;
        }
        if self.no_lease {
            opts.lease = None;
        } else if let Some(l) = &mut opts.lease {
            l.takeover |= self.takeover;
            if let Some(w) = self.lease_wait {
                l.wait = w;
            }
        }
    }
}

/// One database to replicate: its path, replicas and options.
struct Job {
    db: PathBuf,
    replicas: Vec<Replica>,
    opts: ReplicateOptions,
    /// The watched directory (index into the watchers) it was found in:
    /// its replicator then runs under that watcher, which stops it if the
    /// database is removed.
    watcher: Option<usize>,
}

fn page_size(db: &std::path::Path) -> u32 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("PRAGMA page_size", [], |r| r.get(0)))
        .unwrap_or(4096)
}

/// What the config file gives besides the jobs.
#[derive(Default)]
struct FromConfig {
    exec: Option<String>,
    addr: Option<String>,
    readyz_max_lag: Option<Duration>,
    /// The watched `dir` sources, and how to make a new database's options.
    watch: Option<(Vec<config::DirWatch>, super::watched::MakeOptions)>,
    /// The replica of each `dir` source (one per replica of it) where its
    /// databases' keeper lives, the directory, and the lease's TTL.
    keepers: Vec<(Replica, String, Duration)>,
}

fn jobs_from_config(a: &Args) -> anyhow::Result<(Vec<Job>, FromConfig)> {
    let path = config::locate(a.config.as_deref())?;
    let cfg = std::sync::Arc::new(Config::load(&path, &LoadOptions::default())?);
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let make: super::watched::MakeOptions = {
        let (cfg, a) = (cfg.clone(), a.clone());
        std::sync::Arc::new(move |db: &config::DbConfig| {
            let page = match &db.source {
                config::DbSource::Path(p) => page_size(p),
                config::DbSource::Dir { .. } => 4096,
            };
            let mut opts = cfg.replicate_options(db, page);
            a.apply(&mut opts);
            opts
        })
    };
    let mut jobs = Vec::new();
    let mut watchers = Vec::new();
    let mut keepers = Vec::new();
    for entry in &cfg.dbs {
        if let config::DbSource::Dir { dir, .. } = &entry.source
            && let Some(lease) = make(entry).lease
        {
            for r in &entry.replicas {
                keepers.push((r.open()?, dir.display().to_string(), lease.ttl));
            }
        }
        let dbs = entry.instances()?;
        let paths = dbs.iter().filter_map(|d| match &d.source {
            config::DbSource::Path(p) => Some(p.clone()),
            config::DbSource::Dir { .. } => None,
        });
        let watcher = config::DirWatch::new(entry, paths).map(|w| {
            watchers.push(w);
            watchers.len() - 1
        });
        for db in dbs {
            let config::DbSource::Path(p) = &db.source else {
                continue;
            };
            let replicas = db
                .replicas
                .iter()
                .map(|r| r.open())
                .collect::<Result<Vec<_>, _>>()?;
            jobs.push(Job {
                db: p.clone(),
                replicas,
                opts: make(&db),
                watcher,
            });
        }
    }
    // The checks across entries (one replica shared by two databases).
    cfg.expand_dbs()?;
    if jobs.is_empty() && watchers.is_empty() {
        anyhow::bail!("{} lists no database to replicate", path.display());
    }
    let from = FromConfig {
        exec: cfg.exec.clone(),
        addr: cfg.addr.clone(),
        readyz_max_lag: Some(cfg.readyz_max_lag),
        watch: (!watchers.is_empty()).then_some((watchers, make)),
        keepers,
    };
    Ok((jobs, from))
}

/// Where the HTTP server listens.
enum Listen {
    /// An address to bind.
    Addr(std::net::SocketAddr),
    /// The socket systemd passed (`systemd`), already listening.
    Passed(std::net::TcpListener),
}

/// The HTTP server to start next to the replicators, checked (and a passed
/// socket taken) before any database is opened.
fn http_plan(a: &Args, from: &FromConfig) -> anyhow::Result<Option<(Listen, ServerOptions)>> {
    let Some(addr) = a.addr.as_deref().or(from.addr.as_deref()) else {
        return Ok(None);
    };
    let mut opts = ServerOptions::default().token_from_env();
    if let Some(l) = from.readyz_max_lag {
        opts.readyz_max_lag = l;
    }
    let listen = if server::systemd::is_activation_addr(addr) {
        let l = server::systemd::take_listener()?;
        server::check_bind(l.local_addr()?, &opts)?;
        Listen::Passed(l)
    } else {
        let addr = server::parse_addr(addr)?;
        server::check_bind(addr, &opts)?;
        Listen::Addr(addr)
    };
    Ok(Some((listen, opts)))
}

/// Starts the HTTP server; it stops when `stop` turns true.
async fn start_http(
    plan: Option<(Listen, ServerOptions)>,
    replicators: &[Replicator],
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<Http>> {
    let Some((listen, opts)) = plan else {
        return Ok(None);
    };
    let state = ServerState::new(replicators.to_vec(), opts);
    let served = state.clone();
    let (srv, how) = match listen {
        Listen::Addr(addr) => (Server::bind(addr, state).await?, ""),
        Listen::Passed(l) => (
            Server::from_listener(l, state)?,
            " on the socket systemd passed,",
        ),
    };
    tracing::info!("HTTP server{how} listening on http://{}", srv.local_addr()?);
    let task = tokio::spawn(srv.run(async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    Ok(Some((task, served)))
}

/// The HTTP server running, and what it serves.
type Http = (
    tokio::task::JoinHandle<Result<(), server::ServerError>>,
    ServerState,
);

/// Stops the HTTP server, letting requests in flight finish for a moment.
async fn stop_http(http: Option<Http>, stop: &watch::Sender<bool>) {
    let _ = stop.send(true);
    if let Some((mut h, _)) = http {
        match tokio::time::timeout(Duration::from_secs(5), &mut h).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTP server"),
            Ok(_) => {}
            Err(_) => h.abort(),
        }
    }
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    // With LITEVAULT_FAULTS (a test facility): the fault counts, one JSON
    // line on stderr at exit.
    let _faults = litevault::replica::faults::ExitReport;
    let (mut jobs, mut from) = match &a.db {
        Some(db) => {
            if a.urls.is_empty() {
                anyhow::bail!(
                    "no replica URL for {}: give one or more (e.g. file:///backups/app), or use --config",
                    db.display()
                );
            }
            let replicas = a
                .urls
                .iter()
                .map(|u| Replica::open(u))
                .collect::<Result<Vec<_>, _>>()?;
            let mut opts = ReplicateOptions::default();
            a.apply(&mut opts);
            let job = Job {
                db: db.clone(),
                replicas,
                opts,
                watcher: None,
            };
            (vec![job], FromConfig::default())
        }
        None => jobs_from_config(&a)?,
    };
    // One lease renewal for all the databases of a directory (see
    // `litevault::replica::keeper`), taken before they open.
    let keepers: Arc<Vec<Keeper>> = Arc::new(
        futures::future::join_all(
            std::mem::take(&mut from.keepers)
                .into_iter()
                .map(|(base, dir, ttl)| async move { Keeper::start(base, &dir, ttl).await }),
        )
        .await,
    );
    for j in &mut jobs {
        j.replicas = std::mem::take(&mut j.replicas)
            .into_iter()
            .map(|r| keeper::attach(&keepers, r))
            .collect();
    }
    let r = run_jobs(a, jobs, from, keepers.clone()).await;
    // Each database's lease is released by now; then the keepers'.
    for k in keepers.iter() {
        if let Err(e) = k.release().await {
            tracing::warn!(keeper = %k.base(), error = %e, "releasing the keeper failed; it expires by itself");
        }
    }
    r
}

async fn run_jobs(
    a: Args,
    jobs: Vec<Job>,
    from: FromConfig,
    keepers: Arc<Vec<Keeper>>,
) -> anyhow::Result<ExitCode> {
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    let http = if a.once {
        if a.addr.is_some() {
            tracing::warn!("--addr is ignored with --once: nothing stays up to serve");
        }
        None
    } else {
        http_plan(&a, &from)?
    };
    // Open every database first: a signal during start-up still ends with a
    // final sync, and the app starts only once all are open.
    let mut replicators = Vec::with_capacity(jobs.len());
    let mut watcher_of = Vec::with_capacity(jobs.len());
    // With --exec nothing has the databases open before the app starts: one
    // that is behind its replica (an overlapping deploy: the old instance
    // shipped more after this one restored on boot) can take the latest
    // state first.
    let exec_given = a.exec.is_some() || from.exec.is_some();
    let placeholder = match &a.placeholder_addr {
        Some(_) if !exec_given => anyhow::bail!(
            "--placeholder-addr needs --exec (or `exec` in the config): it holds the app's address until the app starts"
        ),
        Some(addr) => Some(super::placeholder::Placeholder::start(addr).await?),
        None => None,
    };
    // A stop while opening (a deploy called off during a lease wait) ends
    // the wait; the databases already open get their final sync, and the
    // app never starts. An open past its wait is let finish (a catch-up
    // restore is never cut in the middle).
    let (stop_waiting, stop_rx) = watch::channel(false);
    let mut stopped = false;
    // Several at once (each waits mostly on its store: the lease, a
    // listing, maybe a snapshot), in the jobs' order; none starts after a
    // stop, and a failed open lets those under way finish before the error
    // is told.
    let opens = futures::stream::iter(jobs.into_iter().map(|j| {
        let mut opts = j.opts;
        opts.catch_up = exec_given;
        opts.stop_waiting = Some(stop_rx.clone());
        let stopping = stop_rx.clone();
        async move {
            if *stopping.borrow() {
                return (j.db, j.watcher, None);
            }
            let r = Replicator::open_many(&j.db, j.replicas, opts).await;
            (j.db, j.watcher, Some(r))
        }
    }))
    .buffered(litevault::defaults::OPEN_CONCURRENCY);
    tokio::pin!(opens);
    let mut failed = None;
    loop {
        let next = if stopped {
            opens.next().await
        } else {
            tokio::select! {
                n = opens.next() => n,
                _ = shutdown.as_mut() => {
                    stopped = true;
                    let _ = stop_waiting.send(true);
                    continue;
                }
            }
        };
        let Some((db, watcher, res)) = next else {
            break;
        };
        let r = match res {
            None | Some(Err(litevault::ReplicateError::StoppedWaiting { .. })) if stopped => {
                continue;
            }
            None => continue,
            Some(r) => r.with_context(|| format!("opening {}", db.display())),
        };
        match r {
            Ok(r) => {
                tracing::info!(db = %db.display(), replicas = ?r.replicas().iter().map(|r| r.to_string()).collect::<Vec<_>>(), txid = %r.local_txid(), "replicating");
                replicators.push(r);
                watcher_of.push(watcher);
            }
            Err(e) => {
                failed.get_or_insert(e);
                stopped = true;
                let _ = stop_waiting.send(true);
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(p) = placeholder {
        p.close().await;
    }
    if stopped {
        tracing::info!("stopped while opening the databases; the app was not started");
        for r in replicators {
            r.run(async {}).await?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.once {
        let mut code = ExitCode::SUCCESS;
        for r in replicators {
            match r.sync_all().await {
                Ok(txid) => println!("{} replicated at TXID {txid}", r.path().display()),
                Err(e) => {
                    eprintln!("error: {}: {e}", r.path().display());
                    code = ExitCode::FAILURE;
                }
            }
            r.run(async {}).await?;
        }
        return Ok(code);
    }
    let (http_stop, http_rx) = watch::channel(false);
    let http = start_http(http, &replicators, http_rx).await?;
    // The databases of watched directories run under their watcher, which
    // takes in those created from now on and stops those removed.
    let watched = from.watch.map(|(watchers, make)| {
        let mut initial: Vec<Vec<Replicator>> = watchers.iter().map(|_| Vec::new()).collect();
        let mut rest = Vec::new();
        for (r, w) in std::mem::take(&mut replicators)
            .into_iter()
            .zip(&watcher_of)
        {
            match w.and_then(|i| initial.get_mut(i)) {
                Some(list) => list.push(r),
                None => rest.push(r),
            }
        }
        replicators = rest;
        super::watched::Watched::start(
            watchers.into_iter().zip(initial).collect(),
            make,
            keepers,
            http.as_ref().map(|h| h.1.clone()),
        )
    });
    let stop_watched = |w: Option<super::watched::Watched>| async move {
        match w {
            Some(w) => w.stop().await,
            None => true,
        }
    };
    let exec = a.exec.clone().or(from.exec);
    if let Some(cmd) = exec {
        // A signal that arrived while the databases were opening: do not
        // start the app at all, just the final sync.
        if futures::FutureExt::now_or_never(shutdown.as_mut()).is_some() {
            stop_watched(watched).await;
            stop_http(http, &http_stop).await;
            for r in replicators {
                r.run(async {}).await?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        let outcome = litevault::supervise::supervise(replicators, &cmd).await;
        // The app has exited: the databases it created get their final sync.
        if !stop_watched(watched).await {
            tracing::error!("final sync of a database of a watched directory failed");
        }
        stop_http(http, &http_stop).await;
        let outcome = outcome?;
        for r in &outcome.replication {
            if let Err(e) = r {
                tracing::error!(error = %e, "final sync after the application exited failed");
            }
        }
        return Ok(ExitCode::from(outcome.exit_code.clamp(0, 255) as u8));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for r in replicators {
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let path = r.path().to_path_buf();
            let res = r
                .run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            (path, res)
        }));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    let mut code = ExitCode::SUCCESS;
    if !stop_watched(watched).await {
        code = ExitCode::FAILURE;
    }
    for t in tasks {
        match t.await {
            Ok((_, Ok(()))) => {}
            Ok((path, Err(e))) => {
                eprintln!("error: {}: {e}", path.display());
                code = ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("error: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    stop_http(http, &http_stop).await;
    if code == ExitCode::SUCCESS {
        tracing::info!("stopped after a final sync");
    } else {
        tracing::warn!("stopped; a final sync did not complete (see the error above)");
    }
    Ok(code)
}
