//! What each measurement yields, as written to the results JSON: the
//! driver's output (one object per `embedded-driver` run), the sidecar's and
//! Litestream's lag runs, the sidecar's durable commits, and `wrk` runs of
//! the example app. Data only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::format::Summary;

/// `embedded-driver put`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutRun {
    pub what: String,
    /// Bytes per PUT.
    pub size: usize,
    pub put: Summary,
    pub samples_ms: Vec<f64>,
}

/// `embedded-driver lag`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LagRun {
    pub what: String,
    /// Commit to the return of `wait_replicated`.
    pub acknowledged: Summary,
    /// The bare PUT made before each acknowledged commit.
    pub put_interleaved: Summary,
    /// Commit to the first listing that shows it.
    pub visible: Summary,
    pub visible_missed: usize,
    /// The watcher's ListObjectsV2 round trips.
    pub list_rtt: Summary,
    pub acknowledged_ms: Vec<f64>,
    pub visible_ms: Vec<f64>,
    pub spacing_ms: f64,
    pub ack_spacing_ms: f64,
    pub warmup: usize,
    pub puts: u64,
    pub bytes_out: u64,
}

/// `embedded-driver durable`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DurableRun {
    pub what: String,
    pub writers: usize,
    pub commit_window_ms: f64,
    pub durable: Summary,
    pub commits: usize,
    pub seconds: f64,
    pub commits_per_s: f64,
    pub puts: u64,
    pub puts_per_commit: f64,
}

/// `embedded-driver durable-vs-put`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DurableVsPutRun {
    pub what: String,
    pub put: Summary,
    pub durable: Summary,
    /// Durable p50 over PUT p50.
    pub p50_ratio: Option<f64>,
}

/// `embedded-driver throughput`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ThroughputRun {
    pub what: String,
    pub seconds_per_round: f64,
    pub rounds: usize,
    pub on_commits_per_s: Vec<f64>,
    pub off_commits_per_s: Vec<f64>,
    pub off_nockpt_commits_per_s: Vec<f64>,
    pub off_nockpt_mean: f64,
    pub on_over_off_nockpt: f64,
    pub on_mean: f64,
    pub off_mean: f64,
    pub on_over_off: f64,
    pub drain_after_round_ms: Vec<f64>,
    /// Writer thread CPU seconds per wall second, by mode (`on`, `off`,
    /// `off_nockpt`), one per round.
    pub writer_cpu_per_wall_s: BTreeMap<String, Vec<f64>>,
    /// The rest of the process (the replicator) with replication on.
    pub replicator_cpu_per_wall_s_on: Vec<f64>,
    pub puts_per_round_on: Vec<u64>,
}

/// Commit-to-visible lag of a replicator in its own process (the sidecar,
/// `litevault replicate`, or `litestream replicate`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessLag {
    pub tool: String,
    pub backend: String,
    /// Counted commits.
    pub commits: usize,
    pub spacing_s: f64,
    /// Counted lags, two decimals.
    pub lags_ms: Vec<f64>,
    /// The lags of the warm-up commits, not counted.
    pub warmup_lags_ms: Vec<f64>,
    pub missed: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// From the start of the process to its first file.
    pub startup_s: f64,
    /// By how many TXIDs the replica moved at each sample.
    pub txid_jumps: Vec<u64>,
    pub replicator_cpu_s: Option<f64>,
    pub replicator_peak_rss_kib: Option<u64>,
    /// Median ListObjectsV2 round trip of the watcher.
    pub list_rtt_median_ms: Option<f64>,
    pub exit_code: i32,
}

/// Sidecar durable commits: commit, then `POST /v1/sync?db=app&wait=true`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SidecarDurable {
    pub backend: String,
    pub writers: usize,
    pub commits: usize,
    pub sync_p50: Option<f64>,
    pub sync_p99: Option<f64>,
    pub total_p50: Option<f64>,
    pub total_p99: Option<f64>,
    pub per_s: f64,
    pub puts_per_commit: f64,
}

/// One row of the durable-commit matrix.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DurableRow {
    pub writers: usize,
    pub embedded: DurableRun,
    pub sidecar: SidecarDurable,
}

/// Everything measured in one network setup of the matrix.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetupRun {
    /// `direct` or `proxy 10ms`.
    pub setup: String,
    pub put: PutRun,
    pub lag_embedded: LagRun,
    pub lag_litevault: ProcessLag,
    pub lag_litestream: ProcessLag,
    pub durable_vs_put: DurableVsPutRun,
    pub durable: Vec<DurableRow>,
    pub throughput: ThroughputRun,
}

/// One `wrk --latency` run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Wrk {
    pub p50_ms: f64,
    pub p99_ms: Option<f64>,
    pub rps: f64,
    pub non_2xx: u64,
    /// wrk's "Socket errors" line, when it printed one.
    pub socket_errors: Option<String>,
}

/// The example app under wrk in one mode.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChatRun {
    /// `plain` or `embedded`.
    pub mode: String,
    pub round: usize,
    pub read: Wrk,
    pub write: Wrk,
    /// `?durable=true` writes (embedded only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_write: Option<Wrk>,
    pub exit_code: i32,
}
