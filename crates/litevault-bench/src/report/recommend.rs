//! Comparisons and the recommendation: every backend against the fastest
//! per workload, the backend to choose (overall and off this machine), and
//! litevault's replication overhead against plain SQLite.

use std::fmt::Write as _;

use super::{
    LITEVAULT_EMBEDDED, READ_OVERHEAD_TARGET, SQLITE_LOCAL, WRITE_OVERHEAD_TARGET, format_ratio,
    format_us, is_write, keeps_data_off_machine, label, short_workload,
};
use crate::results::{BenchReport, Measurement};

/// One workload on one dataset: every backend against the fastest.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Workload name.
    pub workload: String,
    /// Dataset name.
    pub dataset: String,
    /// The backends, fastest first: (backend id, p50 µs, p50 / fastest p50).
    pub ranked: Vec<(String, f64, f64)>,
}

impl Comparison {
    /// The fastest backend id.
    pub fn fastest(&self) -> &str {
        &self.ranked[0].0
    }

    /// The ratio of a backend to the fastest.
    pub fn ratio(&self, backend: &str) -> Option<f64> {
        self.ranked
            .iter()
            .find(|(b, _, _)| b == backend)
            .map(|(_, _, r)| *r)
    }
}

/// A backend chosen by the numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// Backend id.
    pub backend: String,
    /// Geometric mean, over the workloads compared, of its p50 over the
    /// fastest p50 (1.0 = fastest everywhere).
    pub geomean_ratio: f64,
    /// The dataset the choice was made on.
    pub dataset: String,
}

/// What replication costs over plain local SQLite, at the median.
#[derive(Clone, Debug, PartialEq)]
pub struct Overhead {
    /// Dataset.
    pub dataset: String,
    /// The worst read workload and its overhead (0.03 = 3% slower).
    pub worst_read: Option<(String, f64)>,
    /// The worst write workload and its overhead.
    pub worst_write: Option<(String, f64)>,
}

impl Overhead {
    /// Whether the targets hold (reads within 5%, writes within 10%).
    pub fn within_targets(&self) -> bool {
        self.worst_read
            .as_ref()
            .is_none_or(|(_, o)| *o <= READ_OVERHEAD_TARGET)
            && self
                .worst_write
                .as_ref()
                .is_none_or(|(_, o)| *o <= WRITE_OVERHEAD_TARGET)
    }
}

/// The recommendation, derived from the numbers only.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    /// Every workload × dataset measured on at least one backend.
    pub comparisons: Vec<Comparison>,
    /// The fastest backend overall (on the largest dataset measured).
    pub overall: Option<Choice>,
    /// The fastest backend that keeps the data off this machine.
    pub off_machine: Option<Choice>,
    /// litevault's cost over plain SQLite, per dataset where both ran.
    pub overhead: Vec<Overhead>,
    /// The whole recommendation in sentences.
    pub lines: Vec<String>,
}

/// Measurements that count: some samples, no errors beyond 1%.
fn usable(m: &Measurement) -> bool {
    m.samples > 0 && m.p50_us > 0.0 && (m.errors as f64) <= 0.01 * m.samples as f64
}

/// Compares the backends of every workload × dataset.
pub fn comparisons(report: &BenchReport) -> Vec<Comparison> {
    let mut out = Vec::new();
    for dataset in report.datasets() {
        for workload in report.workloads() {
            let mut ranked: Vec<(String, f64)> = report
                .measurements
                .iter()
                .filter(|m| m.dataset == dataset && m.workload == workload && usable(m))
                .map(|m| (m.backend.clone(), m.p50_us))
                .collect();
            if ranked.is_empty() {
                continue;
            }
            ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
            let best = ranked[0].1;
            out.push(Comparison {
                workload: workload.to_string(),
                dataset: dataset.to_string(),
                ranked: ranked.into_iter().map(|(b, p)| (b, p, p / best)).collect(),
            });
        }
    }
    out
}

/// The backend with the lowest geometric mean of its ratios to the fastest,
/// over the workloads of `dataset` that every candidate was measured on.
/// `None` when no candidate ran a common workload.
pub fn choose(comparisons: &[Comparison], dataset: &str, candidates: &[&str]) -> Option<Choice> {
    let here: Vec<&Comparison> = comparisons
        .iter()
        .filter(|c| c.dataset == dataset)
        .collect();
    let candidates: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|b| here.iter().any(|c| c.ratio(b).is_some()))
        .collect();
    let common: Vec<&&Comparison> = here
        .iter()
        .filter(|c| candidates.iter().all(|b| c.ratio(b).is_some()))
        .collect();
    if common.is_empty() {
        return None;
    }
    candidates
        .iter()
        .map(|b| {
            // Every comparison in `common` has a ratio to every candidate
            // (the filter above): none is skipped.
            let logs: f64 = common.iter().filter_map(|c| c.ratio(b)).map(f64::ln).sum();
            (b, (logs / common.len() as f64).exp())
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(b, g)| Choice {
            backend: b.to_string(),
            geomean_ratio: g,
            dataset: dataset.to_string(),
        })
}

/// litevault's overhead over plain SQLite on each dataset where both ran.
pub fn overhead(report: &BenchReport) -> Vec<Overhead> {
    let mut out = Vec::new();
    for dataset in report.datasets() {
        let mut worst_read: Option<(String, f64)> = None;
        let mut worst_write: Option<(String, f64)> = None;
        for workload in report.workloads() {
            let (Some(a), Some(b)) = (
                report.find(LITEVAULT_EMBEDDED, workload, dataset),
                report.find(SQLITE_LOCAL, workload, dataset),
            ) else {
                continue;
            };
            if !usable(a) || !usable(b) {
                continue;
            }
            let o = a.p50_us / b.p50_us - 1.0;
            let slot = if is_write(workload) {
                &mut worst_write
            } else {
                &mut worst_read
            };
            if slot.as_ref().is_none_or(|(_, w)| o > *w) {
                *slot = Some((workload.to_string(), o));
            }
        }
        if worst_read.is_some() || worst_write.is_some() {
            out.push(Overhead {
                dataset: dataset.to_string(),
                worst_read,
                worst_write,
            });
        }
    }
    out
}

fn pct(o: f64) -> String {
    format!("{:+.1}%", o * 100.0)
}

/// Derives the recommendation from the numbers.
pub fn recommend(report: &BenchReport) -> Recommendation {
    let comparisons = comparisons(report);
    let mut lines = Vec::new();
    lines.push(format!("Network model: {}.", report.network.description));
    // The largest dataset measured decides (the last one listed: runs go
    // from small to large).
    let dataset = comparisons.last().map(|c| c.dataset.clone());
    let backends: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for c in &comparisons {
            for (b, _, _) in &c.ranked {
                if !v.contains(&b.as_str()) {
                    v.push(b);
                }
            }
        }
        v
    };
    for c in &comparisons {
        let (best, best_p50, _) = &c.ranked[0];
        let mut s = format!(
            "{} ({}): {} {}",
            short_workload(&c.workload),
            c.dataset,
            label(report, best),
            format_us(*best_p50)
        );
        for (b, p50, r) in &c.ranked[1..] {
            let _ = write!(
                s,
                " vs {} {} ({})",
                label(report, b),
                format_us(*p50),
                format_ratio(*r)
            );
        }
        s.push('.');
        lines.push(s);
    }
    let overall = dataset
        .as_deref()
        .and_then(|d| choose(&comparisons, d, &backends));
    let off: Vec<&str> = backends
        .iter()
        .copied()
        .filter(|b| keeps_data_off_machine(report, b))
        .collect();
    let off_machine = dataset
        .as_deref()
        .and_then(|d| choose(&comparisons, d, &off));
    if let Some(c) = &overall {
        lines.push(format!(
            "Fastest here ({} dataset): {}, on average {} the fastest backend's median per workload.",
            c.dataset,
            label(report, &c.backend),
            format_ratio(c.geomean_ratio)
        ));
    }
    match (&off_machine, &overall) {
        (Some(o), Some(c)) if o.backend != c.backend => lines.push(format!(
            "If the data must survive losing this machine: {}, on average {} the fastest.",
            label(report, &o.backend),
            format_ratio(o.geomean_ratio)
        )),
        (Some(o), _) => lines.push(format!(
            "{} also keeps the data off this machine.",
            label(report, &o.backend)
        )),
        _ => {}
    }
    let overhead = overhead(report);
    for o in &overhead {
        let mut parts = Vec::new();
        if let Some((w, v)) = &o.worst_read {
            parts.push(format!(
                "{} on reads (worst: {}; target within {:.0}%)",
                pct(*v),
                short_workload(w),
                READ_OVERHEAD_TARGET * 100.0
            ));
        }
        if let Some((w, v)) = &o.worst_write {
            parts.push(format!(
                "{} on writes (worst: {}; target within {:.0}%)",
                pct(*v),
                short_workload(w),
                WRITE_OVERHEAD_TARGET * 100.0
            ));
        }
        lines.push(format!(
            "litevault replication vs plain local SQLite ({}): {}: {}.",
            o.dataset,
            parts.join(", "),
            if o.within_targets() {
                "within target"
            } else {
                "OUTSIDE target"
            }
        ));
    }
    for s in &report.skipped {
        let what = match (&s.dataset, &s.workload) {
            (Some(d), Some(w)) => format!(" ({w}, {d})"),
            (Some(d), None) => format!(" ({d})"),
            (None, Some(w)) => format!(" ({w})"),
            (None, None) => String::new(),
        };
        lines.push(format!(
            "Not measured: {}{what}: {}",
            label(report, &s.backend),
            s.reason
        ));
    }
    for m in &report.measurements {
        if m.errors > 0 {
            lines.push(format!(
                "{} errors in {} {} ({}): {}",
                m.errors,
                label(report, &m.backend),
                short_workload(&m.workload),
                m.dataset,
                m.first_error.as_deref().unwrap_or("(no message)")
            ));
        }
    }
    Recommendation {
        comparisons,
        overall,
        off_machine,
        overhead,
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{m, report, typical};
    use crate::results::Skipped;

    #[test]
    fn ratios_follow_the_medians() {
        let r = typical();
        let c = comparisons(&r);
        let page = c.iter().find(|c| c.workload == "page_load").unwrap();
        assert_eq!(page.fastest(), "sqlite-local");
        assert!((page.ratio("pg-proxied").unwrap() - 450.0).abs() < 1e-9);
        assert!((page.ratio("litevault-embedded").unwrap() - 1.02).abs() < 1e-9);
        assert_eq!(page.ratio("sqlite-local"), Some(1.0));
        let rec = recommend(&r);
        let line = rec
            .lines
            .iter()
            .find(|l| l.starts_with("page load"))
            .unwrap();
        assert!(
            line.contains("SQLite, local disk 400 µs")
                && line.contains("PostgreSQL over 10 ms RTT 180 ms (450x)"),
            "{line}"
        );
        assert!(rec.lines[0].contains("adding 10 ms per round trip"));
    }

    #[test]
    fn the_chosen_backend_follows_the_numbers() {
        let rec = recommend(&typical());
        assert_eq!(rec.overall.as_ref().unwrap().backend, "sqlite-local");
        assert!((rec.overall.as_ref().unwrap().geomean_ratio - 1.0).abs() < 1e-9);
        // Off this machine: litevault (replicated) beats PostgreSQL over the network.
        assert_eq!(
            rec.off_machine.as_ref().unwrap().backend,
            "litevault-embedded"
        );
        // Turn the numbers around: PostgreSQL fastest everywhere.
        let mut r = typical();
        for x in r.measurements.iter_mut() {
            if x.backend == "pg-proxied" {
                x.p50_us = 1.0;
            }
        }
        let rec = recommend(&r);
        assert_eq!(rec.overall.as_ref().unwrap().backend, "pg-proxied");
        assert_eq!(rec.off_machine.as_ref().unwrap().backend, "pg-proxied");
    }

    #[test]
    fn choice_uses_only_workloads_every_candidate_ran() {
        // b wins the one common workload; a's second workload, which b did
        // not run, must not count.
        let r = report(vec![
            m("a", "point_read", "small", 20.0),
            m("b", "point_read", "small", 10.0),
            m("a", "insert", "small", 1.0),
        ]);
        let c = comparisons(&r);
        assert_eq!(choose(&c, "small", &["a", "b"]).unwrap().backend, "b");
        assert_eq!(choose(&c, "large", &["a", "b"]), None);
    }

    #[test]
    fn replication_overhead_is_measured_against_plain_sqlite() {
        let r = typical();
        let o = overhead(&r);
        assert_eq!(o.len(), 1);
        let (w, v) = o[0].worst_read.clone().unwrap();
        assert_eq!(w, "point_read"); // +3%, worse than page_load's +2%
        assert!((v - 0.03).abs() < 1e-9);
        let (w, v) = o[0].worst_write.clone().unwrap();
        assert_eq!(w, "insert");
        assert!((v - 0.08).abs() < 1e-9);
        assert!(o[0].within_targets());
        let mut r2 = r.clone();
        r2.measurements
            .iter_mut()
            .find(|x| x.backend == LITEVAULT_EMBEDDED && x.workload == "point_read")
            .unwrap()
            .p50_us = 11.0; // +10% on reads
        let o2 = overhead(&r2);
        assert!(!o2[0].within_targets());
        let rec = recommend(&r2);
        assert!(
            rec.lines
                .iter()
                .any(|l| l.contains("+10.0% on reads") && l.contains("OUTSIDE target")),
            "{:?}",
            rec.lines
        );
    }

    #[test]
    fn errors_and_skips_are_stated_and_bad_measurements_do_not_win() {
        let mut r = typical();
        // A backend that answered instantly but mostly failed must not win.
        let mut bad = m("postgres", "point_read", "small", 0.5);
        bad.errors = 50;
        bad.first_error = Some("connection refused".into());
        r.measurements.push(bad);
        r.skipped.push(Skipped {
            backend: "sqlite-fuse-wal".into(),
            dataset: None,
            workload: None,
            reason: "no FUSE: s3fs missing".into(),
        });
        let rec = recommend(&r);
        let point = rec
            .comparisons
            .iter()
            .find(|c| c.workload == "point_read")
            .unwrap();
        assert_eq!(point.fastest(), "sqlite-local");
        assert!(rec.lines.iter().any(|l| l.contains("connection refused")));
        assert!(
            rec.lines
                .iter()
                .any(|l| l.starts_with("Not measured: sqlite-fuse-wal")
                    && l.contains("s3fs missing"))
        );
    }
}
