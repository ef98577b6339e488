//! A [`BenchReport`] for people: a text table, a recommendation derived from
//! the numbers, and a self-contained HTML page with one SVG bar chart per
//! workload (log scale: the backends differ by up to 1000x). Pure functions,
//! no I/O.
//!
//! Every comparison is at the median (p50): "3.0x" means that backend's
//! median latency is three times the fastest backend's for that workload.

use std::fmt::Write as _;

use super::results::{BenchReport, MIXED_READ, MIXED_WRITE, Measurement};

/// Backend id of plain SQLite on local disk, the baseline of the
/// replication overhead.
pub const SQLITE_LOCAL: &str = "sqlite-local";
/// Backend id of SQLite replicated by an embedded litevault.
pub const LITEVAULT_EMBEDDED: &str = "litevault-embedded";
/// The issue's target: replication costs at most this on reads (fraction).
pub const READ_OVERHEAD_TARGET: f64 = 0.05;
/// The issue's target: replication costs at most this on writes (fraction).
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
    /// Whether the issue's targets hold (reads within 5%, writes within 10%).
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

// ---- HTML ----

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A log-scale axis over whole decades of µs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogAxis {
    /// The lowest decade (10^lo µs).
    pub lo: i32,
    /// The highest decade (10^hi µs).
    pub hi: i32,
}

impl LogAxis {
    /// The decades around `values` (µs, positive).
    pub fn around(values: impl IntoIterator<Item = f64>) -> LogAxis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.into_iter().filter(|v| *v > 0.0 && v.is_finite()) {
            lo = lo.min(v.log10());
            hi = hi.max(v.log10());
        }
        if !lo.is_finite() {
            return LogAxis { lo: 0, hi: 1 };
        }
        let (lo, mut hi) = (lo.floor() as i32, hi.ceil() as i32);
        if hi <= lo {
            hi = lo + 1;
        }
        LogAxis { lo, hi }
    }

    /// Where `v` µs falls on an axis `width` long (0 at 10^lo).
    pub fn x(&self, v: f64, width: f64) -> f64 {
        let v = v.max(10f64.powi(self.lo));
        (v.log10() - self.lo as f64) / (self.hi - self.lo) as f64 * width
    }
}

const COLORS: [&str; 8] = [
    "#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b7791f", "#c53030", "#2c7a7b", "#4a5568",
];

/// One horizontal bar chart: a bar per backend at its p50, a whisker from
/// p50 to p99, log scale.
fn svg_chart(report: &BenchReport, rows: &[&Measurement], order: &[&str], title: &str) -> String {
    let label_w = 260.0;
    let plot_w = 520.0;
    let bar_h = 22.0;
    let gap = 10.0;
    let top = 34.0;
    let axis = LogAxis::around(rows.iter().flat_map(|m| [m.p50_us, m.p99_us]));
    let height = top + rows.len() as f64 * (bar_h + gap) + 30.0;
    let width = label_w + plot_w + 110.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        esc(title)
    );
    let _ = write!(
        s,
        r#"<text x="0" y="16" class="title">{} (median, whisker to p99; log scale)</text>"#,
        esc(title)
    );
    // Decade grid lines.
    for d in axis.lo..=axis.hi {
        let x = label_w + axis.x(10f64.powi(d), plot_w);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"##,
            height - 24.0,
            height - 8.0,
            esc(&format_us(10f64.powi(d)))
        );
    }
    for (i, m) in rows.iter().enumerate() {
        let y = top + i as f64 * (bar_h + gap);
        let color_i = order.iter().position(|b| *b == m.backend).unwrap_or(i);
        let w = axis.x(m.p50_us, plot_w).max(1.0);
        let w99 = axis.x(m.p99_us, plot_w);
        let mid = y + bar_h / 2.0;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="label" text-anchor="end">{}</text>"#,
            label_w - 8.0,
            mid + 4.0,
            esc(label(report, &m.backend))
        );
        let _ = write!(
            s,
            r#"<rect x="{label_w}" y="{y:.1}" width="{w:.1}" height="{bar_h}" fill="{}"><title>{}: p50 {}, p95 {}, p99 {}</title></rect>"#,
            COLORS[color_i % COLORS.len()],
            esc(label(report, &m.backend)),
            esc(&format_us(m.p50_us)),
            esc(&format_us(m.p95_us)),
            esc(&format_us(m.p99_us))
        );
        if w99 > w {
            let _ = write!(
                s,
                r##"<line x1="{:.1}" y1="{mid:.1}" x2="{:.1}" y2="{mid:.1}" stroke="#333"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
                label_w + w,
                label_w + w99,
                label_w + w99,
                y + 5.0,
                label_w + w99,
                y + bar_h - 5.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="value">{}</text>"#,
            label_w + w99.max(w) + 6.0,
            mid + 4.0,
            esc(&format_us(m.p50_us))
        );
    }
    s.push_str("</svg>");
    s
}

/// A self-contained HTML page: the run, the recommendation, and per dataset
/// and workload an SVG chart and a table. No scripts, no external files.
pub fn html(report: &BenchReport) -> String {
    let rec = recommend(report);
    let mut order: Vec<&str> = report.backends.iter().map(|b| b.id.as_str()).collect();
    for m in &report.measurements {
        if !order.contains(&m.backend.as_str()) {
            order.push(&m.backend);
        }
    }
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>");
    h.push_str("<title>litevault bench: storage backends compared</title>");
    h.push_str(
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:960px;color:#222}\
         table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}\
         td:first-child,th:first-child{text-align:left}.chart .title{font-weight:bold;font-size:13px}\
         .chart .label,.chart .value,.chart .tick{font-size:12px}.chart .tick{fill:#666}\
         li{margin:.2em 0}code{background:#f4f4f4;padding:0 3px}</style>",
    );
    h.push_str("</head><body>");
    h.push_str("<h1>Storage backends compared</h1>");
    let _ = write!(
        h,
        "<p>litevault {} · started {} · {} CPUs, {:.1} GiB RAM, {} {} · mode <code>{}</code>, seed {}</p>",
        esc(&report.litevault_version),
        esc(&report.started_at),
        report.host.cpus,
        report.host.memory_bytes as f64 / (1u64 << 30) as f64,
        esc(&report.host.os),
        esc(&report.host.kernel),
        esc(&report.config.mode),
        report.config.seed
    );
    let _ = write!(
        h,
        "<p class=\"network\"><b>Round-trip model:</b> {}</p>",
        esc(&report.network.description)
    );
    h.push_str("<h2>Recommendation</h2><ul class=\"recommendation\">");
    for l in &rec.lines[1..] {
        let _ = write!(h, "<li>{}</li>", esc(l));
    }
    h.push_str("</ul><h2>Backends</h2><table><tr><th>backend</th><th>what</th><th>where</th></tr>");
    for b in &report.backends {
        let mut what = esc(&b.description);
        for n in &b.notes {
            let _ = write!(what, "<br/><small>{}</small>", esc(n));
        }
        let _ = write!(
            h,
            "<tr><td>{}</td><td style=\"text-align:left;white-space:normal\">{what}</td><td style=\"text-align:left;white-space:normal\"><code>{}</code></td></tr>",
            esc(&b.label),
            esc(&b.location)
        );
    }
    h.push_str("</table>");
    for dataset in report.datasets() {
        let _ = write!(h, "<h2>Dataset <code>{}</code></h2>", esc(dataset));
        if let Some(d) = report.config.datasets.iter().find(|d| d.name == dataset) {
            let _ = write!(
                h,
                "<p>{} users, {} conversations, {} messages (~{} bytes each)</p>",
                d.users, d.conversations, d.messages, d.avg_body_bytes
            );
        }
        for workload in report.workloads() {
            let mut rows: Vec<&Measurement> = report
                .measurements
                .iter()
                .filter(|m| m.dataset == dataset && m.workload == workload && m.samples > 0)
                .collect();
            if rows.is_empty() {
                continue;
            }
            rows.sort_by_key(|m| order.iter().position(|b| *b == m.backend));
            let title = format!("{} [{}]", workload_title(workload), dataset);
            let _ = write!(
                h,
                "<section class=\"workload\" data-workload=\"{}\" data-dataset=\"{}\"><h3>{}</h3>",
                esc(workload),
                esc(dataset),
                esc(&title)
            );
            h.push_str(&svg_chart(report, &rows, &order, &title));
            h.push_str(
                "<table><tr><th>backend</th><th>p50</th><th>p95</th><th>p99</th><th>mean</th><th>max</th><th>ops/s</th><th>samples</th><th>errors</th></tr>",
            );
            for m in rows {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td></tr>",
                    esc(label(report, &m.backend)),
                    esc(&format_us(m.p50_us)),
                    esc(&format_us(m.p95_us)),
                    esc(&format_us(m.p99_us)),
                    esc(&format_us(m.mean_us)),
                    esc(&format_us(m.max_us)),
                    m.ops_per_sec,
                    m.samples,
                    m.errors
                );
            }
            h.push_str("</table></section>");
        }
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{BackendInfo, HostInfo, MeasureInfo, NetworkModel, RunConfig, Skipped};

    fn m(backend: &str, workload: &str, dataset: &str, p50: f64) -> Measurement {
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

    fn report(measurements: Vec<Measurement>) -> BenchReport {
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
    fn typical() -> BenchReport {
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

    #[test]
    fn log_axis_gives_each_decade_the_same_width() {
        let a = LogAxis::around([3.0, 180_000.0]);
        assert_eq!(a, LogAxis { lo: 0, hi: 6 });
        let w = 600.0;
        let d1 = a.x(100.0, w) - a.x(10.0, w);
        let d2 = a.x(100_000.0, w) - a.x(10_000.0, w);
        assert!((d1 - 100.0).abs() < 1e-9 && (d2 - 100.0).abs() < 1e-9);
        assert_eq!(a.x(0.0, w), 0.0);
        assert_eq!(LogAxis::around([5.0, 5.0]), LogAxis { lo: 0, hi: 1 });
    }

    /// Checks that tags nest properly (the page is written as well-formed
    /// XML apart from the doctype).
    fn assert_well_formed(page: &str) {
        let body = page.strip_prefix("<!DOCTYPE html>\n").expect("doctype");
        let mut stack: Vec<String> = Vec::new();
        let mut rest = body;
        while let Some(i) = rest.find('<') {
            let text = &rest[..i];
            assert!(!text.contains('>'), "stray '>' in text {text:?}");
            for (j, _) in text.match_indices('&') {
                let ent = &text[j..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                        .iter()
                        .any(|e| ent.starts_with(e)),
                    "bare & in {text:?}"
                );
            }
            let end = rest[i..].find('>').expect("unclosed tag") + i;
            let tag = &rest[i + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack
                    .pop()
                    .unwrap_or_else(|| panic!("</{name}> without opening"));
                assert_eq!(open, name, "</{name}> closes <{open}>");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().unwrap().to_string();
                assert_eq!(
                    tag.matches('"').count() % 2,
                    0,
                    "unbalanced quotes in <{tag}>"
                );
                stack.push(name);
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    #[test]
    fn html_is_well_formed_self_contained_with_a_chart_per_workload() {
        let mut r = typical();
        r.measurements
            .push(m("sqlite-local", "point_read", "large", 30.0));
        r.measurements
            .push(m("pg-proxied", "point_read", "large", 11_000.0));
        let page = html(&r);
        assert_well_formed(&page);
        // 3 workloads on small, 1 on large.
        assert_eq!(page.matches("<svg ").count(), 4);
        assert_eq!(page.matches("<section class=\"workload\"").count(), 4);
        // Nothing fetched from elsewhere.
        for banned in ["<script", "<link", "src=", "@import", "url("] {
            assert!(!page.contains(banned), "{banned} in the page");
        }
        assert_eq!(
            page.matches("http").count(),
            page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
            "only the SVG namespace may name a URL"
        );
        // The numbers and the model are there, escaped.
        assert!(page.contains("180 ms"));
        assert!(page.contains("11.0 ms"));
        assert!(page.contains("adding 10 ms per round trip"));
        assert!(page.contains("SQLite, local disk &lt;desc&gt;"));
        assert!(page.contains("(450x)"));
    }
}
