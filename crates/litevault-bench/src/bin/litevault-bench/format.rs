//! Percentiles and markdown tables, the way every table of BENCHMARKS.md is
//! written. Pure.

use serde::{Deserialize, Serialize};

/// Nearest-rank percentile (`q` in 0..=100); `None` for no samples.
pub fn pct(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.max(1) - 1])
}

/// The largest sample.
pub fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::max)
}

/// The mean (0 for no samples).
pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The median (the mean of the two middle samples for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    match s.len() {
        0 => None,
        n if n % 2 == 1 => Some(s[m]),
        _ => Some((s[m - 1] + s[m]) / 2.0),
    }
}

/// Milliseconds rounded to two decimals, as the samples are stored.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Count and percentiles of samples in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// The largest.
    pub max_ms: Option<f64>,
}

impl Summary {
    pub fn of(v: &[f64]) -> Summary {
        Summary {
            n: v.len(),
            p50_ms: pct(v, 50.0),
            p99_ms: pct(v, 99.0),
            max_ms: max(v),
        }
    }
}

/// `a / b`, or nothing when either is missing or zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a != 0.0 && b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// A number with `decimals` decimals; "–" for a missing one.
pub fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "–".into(),
    }
}

/// [`num`] of a number that is always there.
pub fn n(v: f64, decimals: usize) -> String {
    num(Some(v), decimals)
}

/// Numbers joined by " / " (one per round).
pub fn each(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| n(*x, decimals))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// A markdown table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = vec![
        format!("| {} |", headers.join(" | ")),
        format!("|{}|", vec!["---"; headers.len()].join("|")),
    ];
    out.extend(rows.iter().map(|r| format!("| {} |", r.join(" | "))));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(pct(&v, 50.0), Some(50.0));
        assert_eq!(pct(&v, 99.0), Some(99.0));
        assert_eq!(pct(&[7.0], 99.0), Some(7.0));
        assert_eq!(pct(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(pct(&[], 50.0), None);
        assert_eq!(Summary::of(&[2.0, 9.0]).max_ms, Some(9.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn missing_values_and_ratios() {
        assert_eq!(num(None, 1), "–");
        assert_eq!(num(Some(2.345), 2), "2.35");
        assert_eq!(n(1234.6, 0), "1235");
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(each(&[1.0, 2.26], 1), "1.0 / 2.3");
        assert_eq!(round2(1.23456), 1.23);
    }

    #[test]
    fn markdown_tables() {
        let t = table(&["a", "b"], &[vec!["1".into(), "x".into()]]);
        assert_eq!(t, "| a | b |\n|---|---|\n| 1 | x |");
    }
}
