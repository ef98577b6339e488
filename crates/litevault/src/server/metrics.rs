//! `/metrics`: the status in the Prometheus text exposition format 0.0.4
//! (pure: statuses in, text out).
//!
//! Every family has one `# HELP` and one `# TYPE` line followed by all its
//! samples; counters end in `_total`; labels are `db` (the database path),
//! `replica` (its URL, no credentials), `mode`, `op` and `direction`.

use std::fmt::Write;

use crate::replicate::DbStatus;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out, name }
}

/// Renders the metrics of these databases.
pub fn render(statuses: &[DbStatus]) -> String {
    let mut out = String::new();
    let dbs: Vec<(String, &DbStatus)> = statuses
        .iter()
        .map(|s| (s.db.display().to_string(), s))
        .collect();
    let replicas = || {
        dbs.iter()
            .flat_map(|(db, s)| s.replicas.iter().map(move |r| (db.as_str(), r)))
    };

    let mut f = family(
        &mut out,
        "litevault_replicating",
        "gauge",
        "1 while the database's replicator runs, else 0.",
    );
    for (db, s) in &dbs {
        f.sample(&[("db", db)], if s.running { 1.0 } else { 0.0 });
    }
    let mut f = family(
        &mut out,
        "litevault_txid",
        "gauge",
        "Latest TXID taken from the database.",
    );
    for (db, s) in &dbs {
        f.sample(&[("db", db)], s.txid.0 as f64);
    }
    let mut f = family(
        &mut out,
        "litevault_txid_timestamp_seconds",
        "gauge",
        "When the latest TXID was committed (Unix time; 0 before the first).",
    );
    for (db, s) in &dbs {
        let t = s
            .txid_time
            .map(|t| t.timestamp_millis() as f64 / 1000.0)
            .unwrap_or(0.0);
        f.sample(&[("db", db)], t);
    }
    let mut f = family(
        &mut out,
        "litevault_wal_bytes",
        "gauge",
        "Size of the database's WAL file in bytes.",
    );
    for (db, s) in &dbs {
        f.sample(&[("db", db)], s.wal_bytes as f64);
    }
    let mut f = family(
        &mut out,
        "litevault_local_store_bytes",
        "gauge",
        "Bytes of LTX files kept in the local store beside the database.",
    );
    for (db, s) in &dbs {
        f.sample(&[("db", db)], s.local_store_bytes as f64);
    }
    let mut f = family(
        &mut out,
        "litevault_checkpoints_total",
        "counter",
        "Checkpoints run by the replicator, by mode.",
    );
    for (db, s) in &dbs {
        f.sample(
            &[("db", db), ("mode", "passive")],
            s.checkpoints.passive as f64,
        );
        f.sample(
            &[("db", db), ("mode", "truncate")],
            s.checkpoints.truncate as f64,
        );
    }
    let mut f = family(
        &mut out,
        "litevault_checkpoint_seconds_total",
        "counter",
        "Time spent in checkpoints, in seconds.",
    );
    for (db, s) in &dbs {
        f.sample(&[("db", db)], s.checkpoints.total_seconds);
    }
    let mut f = family(
        &mut out,
        "litevault_replication_lag_seconds",
        "gauge",
        "Age of the oldest commit the replica does not hold yet (0 when up to date).",
    );
    for (db, r) in replicas() {
        f.sample(&[("db", db), ("replica", &r.url)], r.lag_ms as f64 / 1000.0);
    }
    let mut f = family(
        &mut out,
        "litevault_replica_txid",
        "gauge",
        "Latest TXID the replica holds.",
    );
    for (db, r) in replicas() {
        f.sample(&[("db", db), ("replica", &r.url)], r.txid.0 as f64);
    }
    let mut f = family(
        &mut out,
        "litevault_replica_pending_files",
        "gauge",
        "LTX files waiting in the local store for the replica.",
    );
    for (db, r) in replicas() {
        f.sample(&[("db", db), ("replica", &r.url)], r.pending_files as f64);
    }
    let mut f = family(
        &mut out,
        "litevault_replica_requests_total",
        "counter",
        "Requests sent to the replica's object store, by operation.",
    );
    for (db, r) in replicas() {
        let c = &r.requests;
        for (op, n) in [
            ("put", c.puts),
            ("get", c.gets),
            ("list", c.lists),
            ("delete", c.deletes),
        ] {
            f.sample(&[("db", db), ("replica", &r.url), ("op", op)], n as f64);
        }
    }
    let mut f = family(
        &mut out,
        "litevault_replica_bytes_total",
        "counter",
        "Bytes sent to (out) and received from (in) the replica's object store.",
    );
    for (db, r) in replicas() {
        let c = &r.requests;
        for (dir, n) in [("out", c.bytes_out), ("in", c.bytes_in)] {
            f.sample(
                &[("db", db), ("replica", &r.url), ("direction", dir)],
                n as f64,
            );
        }
    }
    let mut f = family(
        &mut out,
        "litevault_replica_errors_total",
        "counter",
        "Failed requests to the replica's object store (each failed attempt).",
    );
    for (db, r) in replicas() {
        f.sample(&[("db", db), ("replica", &r.url)], r.requests.errors as f64);
    }
    let mut f = family(
        &mut out,
        "litevault_replica_files",
        "gauge",
        "LTX files the replica holds, by compaction level.",
    );
    for (db, r) in replicas() {
        for (level, n) in r.files_per_level.iter().enumerate() {
            let l = level.to_string();
            f.sample(&[("db", db), ("replica", &r.url), ("level", &l)], *n as f64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn special_values() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(3.0), "3");
    }
}
