//! The data model of a benchmark run: what the report page, the JSON output
//! and the printed tables are made from. Plain serde structs, no I/O.
//!
//! Latencies are in microseconds (`f64`), one [`Measurement`] per backend ×
//! workload × dataset. The mixed workload produces two measurements, named
//! [`MIXED_READ`] and [`MIXED_WRITE`].

use serde::{Deserialize, Serialize};

/// Workload name of the readers of the mixed workload.
pub const MIXED_READ: &str = "mixed_read";
/// Workload name of the writer of the mixed workload.
pub const MIXED_WRITE: &str = "mixed_write";

/// One complete run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// `CARGO_PKG_VERSION` of the litevault that measured.
    pub litevault_version: String,
    /// When the run started, RFC 3339 (UTC).
    pub started_at: String,
    /// The machine.
    pub host: HostInfo,
    /// The network model between the client and remote backends.
    pub network: NetworkModel,
    /// What was asked for.
    pub config: RunConfig,
    /// Every backend asked for, measured or skipped, in the order given.
    pub backends: Vec<BackendInfo>,
    /// How each dataset was loaded into each backend.
    #[serde(default)]
    pub loads: Vec<LoadInfo>,
    /// The numbers.
    pub measurements: Vec<Measurement>,
    /// What could not be measured, and why.
    pub skipped: Vec<Skipped>,
}

/// The machine that ran the benchmark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Logical CPUs available to the process.
    pub cpus: usize,
    /// Physical memory (`MemTotal`), 0 when unknown.
    pub memory_bytes: u64,
    /// Operating system (`PRETTY_NAME` of /etc/os-release where present).
    pub os: String,
    /// Kernel release (`uname -r`), empty when unknown.
    pub kernel: String,
}

/// The network model: which round trip was added between client and server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkModel {
    /// The added round trip in milliseconds (the delaying proxy), `None`
    /// when remote backends were reached directly.
    pub rtt_ms: Option<f64>,
    /// In words, e.g. "TCP proxy on 127.0.0.1 adding 10 ms per round trip".
    pub description: String,
}

impl Default for NetworkModel {
    fn default() -> Self {
        NetworkModel {
            rtt_ms: None,
            description: "no added network delay (loopback)".to_string(),
        }
    }
}

/// The settings of the run, as they were used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// `quick` (CI) or `full`.
    pub mode: String,
    /// The datasets, in the order measured.
    pub datasets: Vec<DatasetInfo>,
    /// The workloads, in the order measured.
    pub workloads: Vec<String>,
    /// Warm-up before each measurement: operations (count mode) or
    /// milliseconds (time mode), see `measure`.
    pub warmup: MeasureInfo,
    /// How long each workload is measured.
    pub measure: MeasureInfo,
    /// Concurrent readers of the mixed workload (plus one writer).
    pub mixed_readers: usize,
    /// Seed of the data generator and of the operation choices.
    pub seed: u64,
    /// SQLite page cache per connection, KiB (`PRAGMA cache_size = -N`).
    pub sqlite_cache_kib: u64,
    /// PostgreSQL's `shared_buffers` needs to be at most this for the large
    /// dataset to be 10x its buffer cache; the value each server reported is
    /// in its [`BackendInfo::notes`] and [`LoadInfo::cache_bytes`].
    pub pg_shared_buffers_for_large: String,
}

/// A measurement span: a number of operations or a duration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureInfo {
    /// This many operations (per worker).
    Ops(u64),
    /// This many milliseconds.
    Millis(u64),
}

/// One dataset's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// `tiny`, `small` or `large`.
    pub name: String,
    /// Rows of `users`.
    pub users: u64,
    /// Rows of `conversations`.
    pub conversations: u64,
    /// Rows of `messages`.
    pub messages: u64,
    /// Average message body length in bytes.
    pub avg_body_bytes: u64,
}

/// A backend as the report names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// Stable identifier, e.g. `sqlite-local`, `pg-proxied`.
    pub id: String,
    /// Short human label, e.g. "SQLite, local disk".
    pub label: String,
    /// What it is, one sentence.
    pub description: String,
    /// Where the data lives: a path or a URL without password.
    pub location: String,
    /// Facts learned while setting up: effective journal mode, PostgreSQL's
    /// `shared_buffers`, fallbacks taken.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// How one dataset was loaded into one backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadInfo {
    /// Backend id.
    pub backend: String,
    /// Dataset name.
    pub dataset: String,
    /// Wall time of schema creation and load, milliseconds.
    pub load_ms: f64,
    /// Size of the loaded data in bytes (database file, or PostgreSQL's
    /// `pg_total_relation_size` of the tables), when known.
    pub data_bytes: Option<u64>,
    /// The backend's page/buffer cache in bytes, when known.
    pub cache_bytes: Option<u64>,
}

impl LoadInfo {
    /// Data size over cache size (e.g. 10.0 = the data is ten times the
    /// cache), when both are known.
    pub fn cache_ratio(&self) -> Option<f64> {
        match (self.data_bytes, self.cache_bytes) {
            (Some(d), Some(c)) if c > 0 => Some(d as f64 / c as f64),
            _ => None,
        }
    }
}

/// Latencies of one backend × workload × dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Backend id.
    pub backend: String,
    /// Workload name (`point_read`, `range_scan`, `insert`, `page_load`,
    /// [`MIXED_READ`], [`MIXED_WRITE`]).
    pub workload: String,
    /// Dataset name.
    pub dataset: String,
    /// Concurrent workers that produced these samples.
    #[serde(default = "one")]
    pub workers: usize,
    /// Successful operations measured.
    pub samples: u64,
    /// Operations that failed or returned a wrong result.
    pub errors: u64,
    /// The first error, when there was one.
    #[serde(default)]
    pub first_error: Option<String>,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 95th percentile, µs.
    pub p95_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Maximum, µs.
    pub max_us: f64,
    /// Successful operations per second of wall time, all workers together.
    pub ops_per_sec: f64,
}

fn one() -> usize {
    1
}

/// Something that could not be measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Backend id.
    pub backend: String,
    /// The dataset, when only that dataset was skipped.
    #[serde(default)]
    pub dataset: Option<String>,
    /// The workload, when only that workload was skipped.
    #[serde(default)]
    pub workload: Option<String>,
    /// Why, with what to do about it.
    pub reason: String,
}

/// Which statistic a ratio compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Median.
    P50,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// Mean.
    Mean,
}

impl Measurement {
    /// The statistic, µs.
    pub fn stat(&self, stat: Stat) -> f64 {
        match stat {
            Stat::P50 => self.p50_us,
            Stat::P95 => self.p95_us,
            Stat::P99 => self.p99_us,
            Stat::Mean => self.mean_us,
        }
    }
}

impl BenchReport {
    /// The measurement of one backend × workload × dataset.
    pub fn find(&self, backend: &str, workload: &str, dataset: &str) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.backend == backend && m.workload == workload && m.dataset == dataset)
    }

    /// How many times slower `backend_a` is than `backend_b` at the median
    /// (p50 of a / p50 of b): 1.05 means 5% slower, 0.5 twice as fast.
    /// `None` when either was not measured or b's median is zero.
    pub fn ratio(
        &self,
        backend_a: &str,
        backend_b: &str,
        workload: &str,
        dataset: &str,
    ) -> Option<f64> {
        self.ratio_of(Stat::P50, backend_a, backend_b, workload, dataset)
    }

    /// [`ratio`](Self::ratio) for any statistic.
    pub fn ratio_of(
        &self,
        stat: Stat,
        backend_a: &str,
        backend_b: &str,
        workload: &str,
        dataset: &str,
    ) -> Option<f64> {
        let a = self.find(backend_a, workload, dataset)?.stat(stat);
        let b = self.find(backend_b, workload, dataset)?.stat(stat);
        (b > 0.0).then(|| a / b)
    }

    /// The workload names measured, in first-seen order.
    pub fn workloads(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for m in &self.measurements {
            if !out.contains(&m.workload.as_str()) {
                out.push(&m.workload);
            }
        }
        out
    }

    /// The dataset names measured, in first-seen order.
    pub fn datasets(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for m in &self.measurements {
            if !out.contains(&m.dataset.as_str()) {
                out.push(&m.dataset);
            }
        }
        out
    }

    /// The backend measured fastest at the median for a workload and
    /// dataset (ties: the first listed).
    pub fn fastest(&self, workload: &str, dataset: &str) -> Option<&Measurement> {
        self.measurements
            .iter()
            .filter(|m| m.workload == workload && m.dataset == dataset && m.samples > 0)
            .fold(None, |best: Option<&Measurement>, m| match best {
                Some(b) if b.p50_us <= m.p50_us => Some(b),
                _ => Some(m),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(backend: &str, workload: &str, p50: f64) -> Measurement {
        Measurement {
            backend: backend.into(),
            workload: workload.into(),
            dataset: "small".into(),
            workers: 1,
            samples: 10,
            errors: 0,
            first_error: None,
            p50_us: p50,
            p95_us: p50 * 2.0,
            p99_us: p50 * 3.0,
            mean_us: p50,
            max_us: p50 * 4.0,
            // Exactly representable: serde_json's default float parser
            // may be off by one ulp on arbitrary values.
            ops_per_sec: 1000.0 * p50,
        }
    }

    fn report(ms: Vec<Measurement>) -> BenchReport {
        BenchReport {
            litevault_version: "0".into(),
            started_at: "2025-01-01T00:00:00Z".into(),
            host: HostInfo {
                cpus: 2,
                memory_bytes: 0,
                os: "linux".into(),
                kernel: String::new(),
            },
            network: NetworkModel::default(),
            config: RunConfig {
                mode: "quick".into(),
                datasets: vec![],
                workloads: vec![],
                warmup: MeasureInfo::Ops(1),
                measure: MeasureInfo::Millis(5),
                mixed_readers: 2,
                seed: 1,
                sqlite_cache_kib: 8192,
                pg_shared_buffers_for_large: "8MB".into(),
            },
            backends: vec![],
            loads: vec![],
            measurements: ms,
            skipped: vec![],
        }
    }

    #[test]
    fn ratio_divides_medians_and_misses_are_none() {
        let r = report(vec![m("a", "point_read", 10.0), m("b", "point_read", 4.0)]);
        assert_eq!(r.ratio("a", "b", "point_read", "small"), Some(2.5));
        assert_eq!(
            r.ratio_of(Stat::P99, "b", "a", "point_read", "small"),
            Some(0.4)
        );
        assert_eq!(r.ratio("a", "c", "point_read", "small"), None);
        assert_eq!(r.ratio("a", "b", "point_read", "large"), None);
        assert_eq!(r.fastest("point_read", "small").unwrap().backend, "b");
    }

    #[test]
    fn json_round_trip_keeps_everything() {
        let mut r = report(vec![m("a", MIXED_READ, 3.0), m("a", MIXED_WRITE, 9.0)]);
        r.skipped.push(Skipped {
            backend: "fuse".into(),
            dataset: None,
            workload: None,
            reason: "no FUSE".into(),
        });
        let json = serde_json::to_string(&r).unwrap();
        let back: BenchReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.workloads(), vec![MIXED_READ, MIXED_WRITE]);
        assert!(json.contains("\"measure\":{\"millis\":5}"), "{json}");
    }
}
