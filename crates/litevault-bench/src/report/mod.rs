//! A [`BenchReport`] for people: a text table, a recommendation derived from
//! the numbers, and a self-contained HTML page with one SVG bar chart per
//! workload (log scale: the backends differ by up to 1000x). Pure functions,
//! no I/O.
//!
//! Every comparison is at the median (p50): "3.0x" means that backend's
//! median latency is three times the fastest backend's for that workload.
//!
//! This file holds the shared wording (workload names, latencies, ratios,
//! labels); `recommend` compares the backends and says which to use,
//! `text` writes the text and markdown tables, `html` the page and its
//! charts.

mod html;
mod recommend;
mod text;

pub use html::{LogAxis, html};
pub use recommend::{
    Choice, Comparison, Overhead, Recommendation, choose, comparisons, overhead, recommend,
};
pub use text::{markdown, text_table};

use super::results::{BenchReport, MIXED_READ, MIXED_WRITE};

/// Backend id of plain SQLite on local disk, the baseline of the
/// replication overhead.
pub const SQLITE_LOCAL: &str = "sqlite-local";
/// Backend id of SQLite replicated by an embedded litevault.
pub const LITEVAULT_EMBEDDED: &str = "litevault-embedded";
/// The target: replication costs at most this on reads (fraction).
pub const READ_OVERHEAD_TARGET: f64 = 0.05;
/// The target: replication costs at most this on writes (fraction).
pub const WRITE_OVERHEAD_TARGET: f64 = 0.10;

/// Whether a workload writes.
pub fn is_write(workload: &str) -> bool {
    workload == "insert" || workload == MIXED_WRITE
}

/// A workload's name in words.
pub fn workload_title(workload: &str) -> String {
    match workload {
        "point_read" => "point read (1 row by primary key)".into(),
        "range_scan" => "range scan (1,000 rows)".into(),
        "page_load" => "page load (the queries of one conversation page)".into(),
        "insert" => "insert (1-row transaction)".into(),
        w if w == MIXED_READ => "mixed load: readers (point reads beside one writer)".into(),
        w if w == MIXED_WRITE => "mixed load: the writer (inserts beside the readers)".into(),
        other => other.replace('_', " "),
    }
}

fn short_workload(workload: &str) -> String {
    match workload {
        "point_read" => "point read".into(),
        "range_scan" => "range scan".into(),
        "page_load" => "page load".into(),
        "insert" => "insert".into(),
        w if w == MIXED_READ => "mixed reads".into(),
        w if w == MIXED_WRITE => "mixed writes".into(),
        other => other.replace('_', " "),
    }
}

/// A latency in µs as people read it: `850 µs`, `12.3 ms`, `1.20 s`.
pub fn format_us(us: f64) -> String {
    if !us.is_finite() {
        return "-".into();
    }
    if us < 1000.0 {
        format!("{} µs", sig3(us))
    } else if us < 1_000_000.0 {
        format!("{} ms", sig3(us / 1000.0))
    } else {
        format!("{} s", sig3(us / 1_000_000.0))
    }
}

/// Three significant digits, no exponent.
fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A ratio as `1.0x`, `12x`, `450x`.
pub fn format_ratio(r: f64) -> String {
    if r < 10.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.0}x")
    }
}

/// The report's label of a backend (its id when not listed).
pub fn label<'a>(report: &'a BenchReport, backend: &'a str) -> &'a str {
    report
        .backends
        .iter()
        .find(|b| b.id == backend)
        .map(|b| b.label.as_str())
        .unwrap_or(backend)
}

/// Whether a backend keeps the data off this machine's disk: replicated by
/// litevault, on a mounted bucket, or PostgreSQL reached over a network (a
/// proxied URL, or a host other than loopback).
pub fn keeps_data_off_machine(report: &BenchReport, backend: &str) -> bool {
    if backend.starts_with("litevault") || backend.starts_with("sqlite-fuse") {
        return true;
    }
    if backend.starts_with("pg") || backend.starts_with("postgres") {
        if backend.contains("proxied") || backend.contains("remote") {
            return true;
        }
        let location = report
            .backends
            .iter()
            .find(|b| b.id == backend)
            .map(|b| b.location.as_str())
            .unwrap_or("");
        let local = ["@127.0.0.1", "@localhost", "@[::1]", "host=/", "@/"]
            .iter()
            .any(|l| location.contains(l))
            || location.contains("//127.0.0.1")
            || location.contains("//localhost");
        return !local;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{
        BackendInfo, HostInfo, MeasureInfo, Measurement, NetworkModel, RunConfig,
    };

    pub(super) fn m(backend: &str, workload: &str, dataset: &str, p50: f64) -> Measurement {
        Measurement {
            backend: backend.into(),
            workload: workload.into(),
            dataset: dataset.into(),
            workers: 1,
            samples: 100,
            errors: 0,
            first_error: None,
            p50_us: p50,
            p95_us: p50 * 1.5,
            p99_us: p50 * 2.0,
            mean_us: p50 * 1.1,
            max_us: p50 * 5.0,
            ops_per_sec: 1e6 / p50,
        }
    }

    fn b(id: &str, label: &str, location: &str) -> BackendInfo {
        BackendInfo {
            id: id.into(),
            label: label.into(),
            description: format!("{label} <desc>"),
            location: location.into(),
            notes: vec![],
        }
    }

    pub(super) fn report(measurements: Vec<Measurement>) -> BenchReport {
        BenchReport {
            litevault_version: "0.1.0".into(),
            started_at: "2026-11-28T08:00:00Z".into(),
            host: HostInfo {
                cpus: 2,
                memory_bytes: 24 << 30,
                os: "Debian".into(),
                kernel: "6.1".into(),
            },
            network: NetworkModel {
                rtt_ms: Some(10.0),
                description: "TCP proxy on 127.0.0.1 adding 10 ms per round trip".into(),
            },
            config: RunConfig {
                mode: "full".into(),
                datasets: vec![],
                workloads: vec![],
                warmup: MeasureInfo::Ops(1),
                measure: MeasureInfo::Millis(5),
                mixed_readers: 2,
                seed: 42,
                sqlite_cache_kib: 8192,
                pg_shared_buffers_for_large: "8MB".into(),
            },
            backends: vec![
                b("sqlite-local", "SQLite, local disk", "/tmp/x"),
                b("litevault-embedded", "SQLite + litevault", "/tmp/y"),
                b(
                    "pg-proxied",
                    "PostgreSQL over 10 ms RTT",
                    "postgres://postgres@127.0.0.1:1/bench",
                ),
                b(
                    "postgres",
                    "PostgreSQL, loopback",
                    "postgres://postgres@127.0.0.1:2/bench",
                ),
            ],
            loads: vec![],
            measurements,
            skipped: vec![],
        }
    }

    /// Local SQLite fastest, litevault close behind, PostgreSQL over the
    /// proxy 450x slower on page loads.
    pub(super) fn typical() -> BenchReport {
        report(vec![
            m("sqlite-local", "point_read", "small", 10.0),
            m("litevault-embedded", "point_read", "small", 10.3),
            m("pg-proxied", "point_read", "small", 10_100.0),
            m("sqlite-local", "page_load", "small", 400.0),
            m("litevault-embedded", "page_load", "small", 408.0),
            m("pg-proxied", "page_load", "small", 180_000.0),
            m("sqlite-local", "insert", "small", 50.0),
            m("litevault-embedded", "insert", "small", 54.0),
            m("pg-proxied", "insert", "small", 20_500.0),
        ])
    }

    #[test]
    fn off_machine_classification() {
        let r = typical();
        assert!(!keeps_data_off_machine(&r, "sqlite-local"));
        assert!(keeps_data_off_machine(&r, "litevault-embedded"));
        assert!(keeps_data_off_machine(&r, "sqlite-fuse-delete"));
        assert!(keeps_data_off_machine(&r, "pg-proxied"));
        assert!(!keeps_data_off_machine(&r, "postgres")); // loopback
        let mut r2 = r.clone();
        r2.backends[3].location = "postgres://app@db.internal:5432/app".into();
        assert!(keeps_data_off_machine(&r2, "postgres"));
    }

    #[test]
    fn latencies_and_ratios_read_well() {
        assert_eq!(format_us(12.345), "12.3 µs");
        assert_eq!(format_us(400.0), "400 µs");
        assert_eq!(format_us(1500.0), "1.50 ms");
        assert_eq!(format_us(180_000.0), "180 ms");
        assert_eq!(format_us(2_500_000.0), "2.50 s");
        assert_eq!(format_ratio(1.03), "1.0x");
        assert_eq!(format_ratio(450.0), "450x");
    }
}
