//! The measurements as a text table (for the terminal) and as markdown
//! tables (for BENCHMARKS.md).

use std::fmt::Write as _;

use super::recommend::comparisons;
use super::{format_ratio, format_us, label, short_workload, workload_title};
use crate::results::{BenchReport, Measurement};

/// The measurements as text: per dataset and workload, one row per backend
/// with p50/p95/p99, throughput and the ratio to the fastest.
pub fn text_table(report: &BenchReport) -> String {
    let comps = comparisons(report);
    let width = report
        .measurements
        .iter()
        .map(|m| label(report, &m.backend).chars().count())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = String::new();
    for dataset in report.datasets() {
        for workload in report.workloads() {
            let rows: Vec<&Measurement> = report
                .measurements
                .iter()
                .filter(|m| m.dataset == dataset && m.workload == workload)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let comp = comps
                .iter()
                .find(|c| c.dataset == dataset && c.workload == workload);
            let _ = writeln!(out, "{} [{}]", workload_title(workload), dataset);
            let _ = writeln!(
                out,
                "  {:<width$}  {:>10}  {:>10}  {:>10}  {:>10}  {:>7}",
                "backend", "p50", "p95", "p99", "ops/s", "vs best"
            );
            let mut rows = rows;
            rows.sort_by(|a, b| a.p50_us.total_cmp(&b.p50_us));
            for m in rows {
                let ratio = comp
                    .and_then(|c| c.ratio(&m.backend))
                    .map(format_ratio)
                    .unwrap_or_else(|| "-".into());
                let _ = write!(
                    out,
                    "  {:<width$}  {:>10}  {:>10}  {:>10}  {:>10.0}  {:>7}",
                    label(report, &m.backend),
                    format_us(m.p50_us),
                    format_us(m.p95_us),
                    format_us(m.p99_us),
                    m.ops_per_sec,
                    ratio
                );
                if m.errors > 0 {
                    let _ = write!(out, "  ({} errors)", m.errors);
                }
                out.push('\n');
            }
            out.push('\n');
        }
    }
    out
}

/// A markdown table per dataset: a row per backend, a column per workload
/// (p50, ratio to the fastest), for BENCHMARKS.md.
pub fn markdown(report: &BenchReport) -> String {
    let comps = comparisons(report);
    let mut out = String::new();
    for dataset in report.datasets() {
        let workloads: Vec<&str> = report
            .workloads()
            .into_iter()
            .filter(|w| {
                comps
                    .iter()
                    .any(|c| c.dataset == dataset && c.workload == *w)
            })
            .collect();
        let _ = writeln!(out, "**{dataset}** (p50, and × the fastest):\n");
        let _ = write!(out, "| backend |");
        for w in &workloads {
            let _ = write!(out, " {} |", short_workload(w));
        }
        out.push_str("\n|---|");
        for _ in &workloads {
            out.push_str("---:|");
        }
        out.push('\n');
        let mut backends: Vec<&str> = Vec::new();
        for m in report.measurements.iter().filter(|m| m.dataset == dataset) {
            if !backends.contains(&m.backend.as_str()) {
                backends.push(&m.backend);
            }
        }
        for b in backends {
            let _ = write!(out, "| {} |", label(report, b));
            for w in &workloads {
                let cell = match (
                    report.find(b, w, dataset),
                    comps
                        .iter()
                        .find(|c| c.dataset == dataset && c.workload == *w)
                        .and_then(|c| c.ratio(b)),
                ) {
                    (Some(m), Some(r)) => format!("{} ({})", format_us(m.p50_us), format_ratio(r)),
                    (Some(m), None) => format!("{} errors", m.errors),
                    _ => "-".into(),
                };
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::typical;

    #[test]
    fn text_table_lists_every_backend_with_its_ratio() {
        let t = text_table(&typical());
        let block: Vec<&str> = t
            .split("\n\n")
            .find(|b| b.starts_with("page load"))
            .unwrap()
            .lines()
            .collect();
        assert!(block[1].contains("p50") && block[1].contains("p99"));
        // Fastest first.
        assert!(block[2].contains("SQLite, local disk") && block[2].trim_end().ends_with("1.0x"));
        assert!(block[4].contains("PostgreSQL over 10 ms RTT") && block[4].contains("450x"));
        assert!(block[4].contains("180 ms") && block[4].contains("360 ms")); // p50, p99
    }

    #[test]
    fn markdown_has_a_row_per_backend_and_a_column_per_workload() {
        let md = markdown(&typical());
        assert!(
            md.contains("| backend | point read | page load | insert |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| PostgreSQL over 10 ms RTT | 10.1 ms (1010x) | 180 ms (450x) | 20.5 ms (410x) |"
            ),
            "{md}"
        );
    }
}
