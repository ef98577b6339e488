//! The self-contained HTML page: the run, the recommendation, and an SVG
//! bar chart (log scale) and a table per dataset and workload.

use std::fmt::Write as _;

use super::recommend::recommend;
use super::{format_us, label, workload_title};
use crate::results::{BenchReport, Measurement};

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
    use crate::report::tests::{m, typical};

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
