//! The runner: every backend × dataset × workload, measured the same way.
//!
//! For each backend, for each dataset: [`Backend::load`] once (a failure
//! puts the backend's dataset into [`BenchReport::skipped`] and the run goes
//! on), then each workload: open one session per worker, warm up, wait for
//! every worker, measure, merge. Each worker runs on its own thread (a
//! blocking-pool thread driving the worker's future), so SQLite's blocking
//! calls never hold back another worker or PostgreSQL's connection tasks.
//! Latency is the time spent in the backend's calls only: choosing
//! arguments and checking answers are outside it.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::backend::{Backend, Setup};
use super::results::{
    BenchReport, HostInfo, MIXED_READ, MIXED_WRITE, MeasureInfo, Measurement, NetworkModel,
    RunConfig, Skipped,
};
use super::stats::Recorder;
use super::workload::{DatasetSpec, Op, OpGen, Session, Workload};

/// Why a benchmark step failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The run's settings cannot work.
    #[error("invalid benchmark settings: {0}")]
    InvalidOptions(String),
    /// SQLite refused something.
    #[error("SQLite, {what}: {source}")]
    Sqlite {
        /// What we were doing.
        what: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL refused something.
    #[error("PostgreSQL, {what}: {message}")]
    Postgres {
        /// What we were doing.
        what: String,
        /// The server's message (with detail and hint where it gave them).
        message: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite would not switch to the journal mode asked for.
    #[error(
        "{path}: journal_mode={wanted} asked, SQLite kept {got}; this file system does not support it, use the other journal mode"
    )]
    JournalMode {
        /// The database.
        path: std::path::PathBuf,
        /// The mode asked for.
        wanted: &'static str,
        /// The mode SQLite reported.
        got: String,
    },
    /// The embedded vault failed.
    #[error(transparent)]
    Vault(#[from] litevault::vault::VaultError),
    /// A backend could not be set up.
    #[error("{backend}: {reason}")]
    Setup {
        /// Backend id.
        backend: String,
        /// What went wrong and what to do.
        reason: String,
    },
    /// A session was asked for before any dataset was loaded.
    #[error("{backend}: no dataset loaded; call load() before session()")]
    NotLoaded {
        /// Backend id.
        backend: String,
    },
    /// A backend answered a query wrongly.
    #[error("{workload}: wrong result: {detail}")]
    WrongResult {
        /// Workload name.
        workload: &'static str,
        /// What was expected and what came.
        detail: String,
    },
    /// A worker thread failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<litevault::task::TaskFailed> for BenchError {
    fn from(e: litevault::task::TaskFailed) -> Self {
        BenchError::Internal(e.to_string())
    }
}

/// How long a warm-up or a measurement lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// This many operations per worker.
    Ops(u64),
    /// This long (all workers together).
    Time(Duration),
}

impl Span {
    fn info(self) -> MeasureInfo {
        match self {
            Span::Ops(n) => MeasureInfo::Ops(n),
            Span::Time(d) => MeasureInfo::Millis(d.as_millis() as u64),
        }
    }
}

/// The settings of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `quick` or `full`, as the report states it.
    pub mode: String,
    /// Datasets, each loaded once per backend.
    pub datasets: Vec<DatasetSpec>,
    /// Workloads, measured in this order on each dataset.
    pub workloads: Vec<Workload>,
    /// Warm-up before each measurement (not recorded).
    pub warmup: Span,
    /// The measurement.
    pub measure: Span,
    /// Readers of the mixed workload (plus one writer).
    pub mixed_readers: usize,
    /// Seed of the data and of the operations.
    pub seed: u64,
    /// SQLite page cache per connection, KiB.
    pub sqlite_cache_kib: u64,
    /// The `shared_buffers` a PostgreSQL cluster should have for the large
    /// dataset to be 10x its buffer cache (stated in the report; a cluster
    /// the benchmark starts is configured with it).
    pub pg_shared_buffers: String,
    /// The network model, as the report states it.
    pub network: NetworkModel,
}

/// SQLite page cache of every connection in the default runs: 8 MiB.
pub const DEFAULT_SQLITE_CACHE_KIB: u64 = 8 * 1024;

impl Default for RunOptions {
    /// The full run: the small and large datasets, every workload, 0.5 s
    /// warm-up and 3 s measurement each, 4 readers in the mixed load.
    fn default() -> Self {
        let seed = 42;
        RunOptions {
            mode: "full".into(),
            datasets: vec![DatasetSpec::small(seed), DatasetSpec::large(seed)],
            workloads: Workload::all(),
            warmup: Span::Time(Duration::from_millis(500)),
            measure: Span::Time(Duration::from_secs(3)),
            mixed_readers: 4,
            seed,
            sqlite_cache_kib: DEFAULT_SQLITE_CACHE_KIB,
            pg_shared_buffers: "8MB".into(),
            network: NetworkModel::default(),
        }
    }
}

impl RunOptions {
    /// For CI: the tiny dataset, 20 warm-up and 200 measured operations per
    /// worker, 2 readers in the mixed load. Seconds per backend.
    pub fn quick() -> RunOptions {
        let seed = 42;
        RunOptions {
            mode: "quick".into(),
            datasets: vec![DatasetSpec::tiny(seed)],
            warmup: Span::Ops(20),
            measure: Span::Ops(200),
            mixed_readers: 2,
            ..RunOptions::default()
        }
    }

    /// Checks the settings, naming the one that cannot work.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::InvalidOptions(m.to_string()));
        if self.datasets.is_empty() {
            return bad("no datasets: add at least one (tiny, small or large)");
        }
        if self.workloads.is_empty() {
            return bad("no workloads: add at least one");
        }
        for (i, d) in self.datasets.iter().enumerate() {
            d.validate()?;
            if self.datasets[..i].iter().any(|o| o.name == d.name) {
                return Err(BenchError::InvalidOptions(format!(
                    "dataset {:?} is listed twice: give each dataset its own name",
                    d.name
                )));
            }
        }
        match self.measure {
            Span::Ops(0) => return bad("measure: 0 operations; measure at least 1"),
            Span::Time(d) if d.is_zero() => {
                return bad("measure: zero duration; measure for some time");
            }
            _ => {}
        }
        if self.mixed_readers == 0 && self.workloads.contains(&Workload::Mixed) {
            return bad("mixed_readers = 0: the mixed workload needs at least 1 reader");
        }
        if self.sqlite_cache_kib == 0 {
            return bad("sqlite_cache_kib = 0: give SQLite a page cache (e.g. 8192)");
        }
        Ok(())
    }

    /// The settings as the report states them.
    pub fn config(&self) -> RunConfig {
        RunConfig {
            mode: self.mode.clone(),
            datasets: self.datasets.iter().map(DatasetSpec::info).collect(),
            workloads: self
                .workloads
                .iter()
                .map(|w| w.name().to_string())
                .collect(),
            warmup: self.warmup.info(),
            measure: self.measure.info(),
            mixed_readers: self.mixed_readers,
            seed: self.seed,
            sqlite_cache_kib: self.sqlite_cache_kib,
            pg_shared_buffers_for_large: self.pg_shared_buffers.clone(),
        }
    }

    fn setup(&self, dataset: &DatasetSpec) -> Setup {
        Setup {
            dataset: dataset.clone(),
            sqlite_cache_kib: self.sqlite_cache_kib,
            sessions: self.mixed_readers + 1,
        }
    }
}

/// Measures every backend × dataset × workload. Backends that fail to load
/// a dataset, and workloads that cannot start, land in
/// [`BenchReport::skipped`] with the reason; the rest is measured. Each
/// backend is closed at the end of its turn.
pub async fn run(
    mut backends: Vec<Box<dyn Backend>>,
    opts: &RunOptions,
) -> Result<BenchReport, BenchError> {
    opts.validate()?;
    let mut report = BenchReport {
        litevault_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        host: host_info(),
        network: opts.network.clone(),
        config: opts.config(),
        backends: Vec::new(),
        loads: Vec::new(),
        measurements: Vec::new(),
        skipped: Vec::new(),
    };
    for backend in backends.iter_mut() {
        let id = backend.info().id;
        for dataset in &opts.datasets {
            tracing::info!(backend = %id, dataset = %dataset.name, "loading");
            match backend.load(&opts.setup(dataset)).await {
                Ok(load) => report.loads.push(load),
                Err(e) => {
                    tracing::warn!(backend = %id, dataset = %dataset.name, "load failed: {e}");
                    report.skipped.push(Skipped {
                        backend: id.clone(),
                        dataset: Some(dataset.name.clone()),
                        workload: None,
                        reason: e.to_string(),
                    });
                    continue;
                }
            }
            for &workload in &opts.workloads {
                tracing::info!(backend = %id, dataset = %dataset.name, workload = workload.name(), "measuring");
                match measure(backend.as_ref(), workload, dataset, opts).await {
                    Ok(ms) => report.measurements.extend(ms),
                    Err(e) => report.skipped.push(Skipped {
                        backend: id.clone(),
                        dataset: Some(dataset.name.clone()),
                        workload: Some(workload.name().to_string()),
                        reason: e.to_string(),
                    }),
                }
            }
        }
        let mut info = backend.info();
        if let Err(e) = backend.close().await {
            tracing::warn!(backend = %id, "cleanup failed: {e}");
            info.notes.push(format!("cleanup failed: {e}"));
        }
        report.backends.push(info);
    }
    Ok(report)
}

/// One worker's part of a workload.
struct Role {
    op: Op,
    group: usize,
}

/// Measures one workload on a loaded backend: one [`Measurement`] per
/// group of workers (one for single workloads; readers and writer for the
/// mixed one).
pub async fn measure(
    backend: &dyn Backend,
    workload: Workload,
    dataset: &DatasetSpec,
    opts: &RunOptions,
) -> Result<Vec<Measurement>, BenchError> {
    let roles: Vec<Role> = match workload {
        Workload::Single(op) => vec![Role { op, group: 0 }],
        Workload::Mixed => (0..opts.mixed_readers)
            .map(|_| Role {
                op: Op::PointRead,
                group: 0,
            })
            .chain([Role {
                op: Op::Insert,
                group: 1,
            }])
            .collect(),
    };
    let mut sessions = Vec::with_capacity(roles.len());
    for _ in &roles {
        sessions.push(backend.session().await?);
    }
    let ready = Arc::new(Barrier::new(roles.len()));
    let handle = tokio::runtime::Handle::current();
    let mut workers = Vec::with_capacity(roles.len());
    // Streams are distinct per workload and worker, so inserts of one
    // workload never repeat another's.
    let base_stream = match workload {
        Workload::Single(op) => op as u64 * 64,
        Workload::Mixed => 1024,
    };
    for (k, (role, session)) in roles.iter().zip(sessions).enumerate() {
        let gen_ = OpGen::new(dataset.clone(), base_stream + k as u64);
        let ready = ready.clone();
        let handle = handle.clone();
        let (op, warmup, span) = (role.op, opts.warmup, opts.measure);
        workers.push(tokio::task::spawn_blocking(move || {
            handle.block_on(worker(session, gen_, op, warmup, span, ready))
        }));
    }
    let mut groups: Vec<(Recorder, Duration, usize)> = Vec::new();
    for (role, w) in roles.iter().zip(workers) {
        let (rec, wall) = w
            .await
            .map_err(|e| BenchError::Internal(format!("a benchmark worker failed: {e}")))?;
        if groups.len() <= role.group {
            groups.resize_with(role.group + 1, || (Recorder::default(), Duration::ZERO, 0));
        }
        let g = &mut groups[role.group];
        g.0.merge(rec);
        g.1 = g.1.max(wall);
        g.2 += 1;
    }
    let id = backend.info().id;
    Ok(groups
        .into_iter()
        .enumerate()
        .map(|(k, (rec, wall, workers))| {
            let name = match (workload, k) {
                (Workload::Single(op), _) => op.name(),
                (Workload::Mixed, 0) => MIXED_READ,
                (Workload::Mixed, _) => MIXED_WRITE,
            };
            let s = rec.summary(wall);
            Measurement {
                backend: id.clone(),
                workload: name.to_string(),
                dataset: dataset.name.clone(),
                workers,
                samples: s.samples,
                errors: s.errors,
                first_error: s.first_error,
                p50_us: s.p50_us,
                p95_us: s.p95_us,
                p99_us: s.p99_us,
                mean_us: s.mean_us,
                max_us: s.max_us,
                ops_per_sec: s.ops_per_sec,
            }
        })
        .collect())
}

/// Warm up, wait for every other worker, measure. Failures are counted,
/// never abort (every worker must reach the barrier).
async fn worker(
    mut session: Box<dyn Session>,
    mut gen_: OpGen,
    op: Op,
    warmup: Span,
    span: Span,
    ready: Arc<Barrier>,
) -> (Recorder, Duration) {
    let mut scratch = Recorder::default();
    repeat(session.as_mut(), &mut gen_, op, warmup, &mut scratch).await;
    ready.wait();
    let capacity = match span {
        Span::Ops(n) => n as usize,
        Span::Time(_) => 4096,
    };
    let mut rec = Recorder::with_capacity(capacity);
    let start = Instant::now();
    repeat(session.as_mut(), &mut gen_, op, span, &mut rec).await;
    let wall = start.elapsed();
    drop(session);
    (rec, wall)
}

async fn repeat(s: &mut dyn Session, g: &mut OpGen, op: Op, span: Span, rec: &mut Recorder) {
    let start = Instant::now();
    let mut done = 0u64;
    loop {
        match span {
            Span::Ops(n) if done >= n => break,
            Span::Time(d) if start.elapsed() >= d => break,
            _ => {}
        }
        match g.run(op, s).await {
            Ok(dt) => rec.record(dt),
            Err(e) => rec.record_error(|| e.to_string()),
        }
        done += 1;
    }
}

/// This machine, as far as we can tell.
pub fn host_info() -> HostInfo {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    HostInfo {
        cpus,
        memory_bytes,
        os,
        kernel,
    }
}
