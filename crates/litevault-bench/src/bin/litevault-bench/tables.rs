//! The markdown tables printed after each run, the tables of BENCHMARKS.md.
//! Pure: figures in, text out.

use crate::figures::{ChatRun, SetupRun, SidecarDurable, ThroughputRun};
use crate::format::{each, n, num, ratio, table};

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// Commits per CPU-second of the writer thread in `mode`, mean over the
/// rounds that have a CPU figure.
pub fn per_cpu(commits: &[f64], t: &ThroughputRun, mode: &str) -> Option<f64> {
    let cpu = t.writer_cpu_per_wall_s.get(mode)?;
    let v: Vec<f64> = commits
        .iter()
        .zip(cpu)
        .filter(|(_, c)| **c != 0.0)
        .map(|(n, c)| n / c)
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The matrix: PUT latency, lag, durable commits, throughput.
pub fn matrix_tables(setups: &[SetupRun]) -> String {
    let mut out = Vec::new();
    out.push(
        "Bare PUT latency of the store (4 KiB, object_store client, after 5 warm-up PUTs):\n"
            .to_string(),
    );
    let rows: Vec<Vec<String>> = setups
        .iter()
        .map(|x| {
            let p = &x.put.put;
            vec![s(&x.setup), s(p.n), num(p.p50_ms, 1), num(p.p99_ms, 1)]
        })
        .collect();
    out.push(table(&["setup", "PUTs", "p50 ms", "p99 ms"], &rows));

    let mut rows = Vec::new();
    for x in setups {
        let e = &x.lag_embedded;
        let put50 = e.put_interleaved.p50_ms;
        let (ack, vis) = (&e.acknowledged, &e.visible);
        rows.push(vec![
            s(&x.setup),
            s("embedded (acknowledged)"),
            s(ack.n),
            s(0),
            num(ack.p50_ms, 1),
            num(ack.p99_ms, 1),
            num(put50, 1),
            num(ack.p50_ms.zip(put50).map(|(a, p)| a - p), 1),
            s(""),
            s(""),
        ]);
        rows.push(vec![
            s(&x.setup),
            s("embedded (visible)"),
            s(vis.n),
            s(e.visible_missed),
            num(vis.p50_ms, 1),
            num(vis.p99_ms, 1),
            s(""),
            s(""),
            s("1.0"),
            s("1.0"),
        ]);
        for (r, label) in [
            (&x.lag_litevault, "sidecar (visible)"),
            (&x.lag_litestream, "Litestream (visible)"),
        ] {
            rows.push(vec![
                s(&x.setup),
                s(label),
                s(r.commits.saturating_sub(r.missed)),
                s(r.missed),
                num(r.p50_ms, 1),
                num(r.p99_ms, 1),
                s(""),
                s(""),
                num(ratio(r.p50_ms, vis.p50_ms), 1),
                num(ratio(r.p99_ms, vis.p99_ms), 1),
            ]);
        }
    }
    out.push("\nReplication lag, single-row commits:\n".into());
    out.push(table(
        &[
            "setup",
            "tool (definition)",
            "samples",
            "missed",
            "p50 ms",
            "p99 ms",
            "interleaved PUT p50 ms",
            "p50 - PUT p50 ms",
            "p50 / embedded visible",
            "p99 / embedded visible",
        ],
        &rows,
    ));
    let notes: Vec<String> = setups
        .iter()
        .map(|x| {
            format!(
                "- {}: ListObjectsV2 round trip during the embedded run, p50 {} ms (the \
                 resolution of 'visible')",
                x.setup,
                num(x.lag_embedded.list_rtt.p50_ms, 1)
            )
        })
        .collect();
    out.push(format!("\n{}", notes.join("\n")));

    let mut rows = Vec::new();
    for x in setups {
        let put50 = x.put.put.p50_ms;
        let (mut one_e, mut one_s) = (None, None);
        for d in &x.durable {
            let (e, sc) = (&d.embedded, &d.sidecar);
            let one_e = *one_e.get_or_insert(e.commits_per_s);
            let one_s = *one_s.get_or_insert(sc.per_s);
            rows.push(vec![
                s(&x.setup),
                s(d.writers),
                s("embedded"),
                num(e.durable.p50_ms, 1),
                num(e.durable.p99_ms, 1),
                num(ratio(e.durable.p50_ms, put50), 2),
                n(e.commits_per_s, 0),
                n(e.commits_per_s / one_e, 1),
                n(e.puts_per_commit, 2),
            ]);
            rows.push(vec![
                s(&x.setup),
                s(d.writers),
                s("sidecar"),
                num(sc.total_p50, 1),
                num(sc.total_p99, 1),
                num(ratio(sc.total_p50, put50), 2),
                n(sc.per_s, 0),
                n(sc.per_s / one_s, 1),
                n(sc.puts_per_commit, 2),
            ]);
        }
    }
    out.push("\nDurable commit vs bare PUT, one writer alternating the two:\n".into());
    let vs: Vec<Vec<String>> = setups
        .iter()
        .map(|x| {
            let v = &x.durable_vs_put;
            vec![
                s(&x.setup),
                s(v.put.n),
                num(v.put.p50_ms, 1),
                num(v.put.p99_ms, 1),
                num(v.durable.p50_ms, 1),
                num(v.durable.p99_ms, 1),
                num(v.p50_ratio, 2),
            ]
        })
        .collect();
    out.push(table(
        &[
            "setup",
            "pairs",
            "PUT p50 ms",
            "PUT p99 ms",
            "durable p50 ms",
            "durable p99 ms",
            "durable p50 / PUT p50",
        ],
        &vs,
    ));
    out.push("\nDurable commits (commit + wait until the replica holds it):\n".into());
    out.push(table(
        &[
            "setup",
            "writers",
            "mode",
            "p50 ms",
            "p99 ms",
            "p50 / PUT p50",
            "commits/s",
            "commits/s vs 1 writer",
            "PUTs per commit",
        ],
        &rows,
    ));

    let (mut rows, mut cpu_rows) = (Vec::new(), Vec::new());
    for x in setups {
        let t = &x.throughput;
        let on_cpu = per_cpu(&t.on_commits_per_s, t, "on");
        let off_cpu = per_cpu(&t.off_nockpt_commits_per_s, t, "off_nockpt");
        let share = |mode: &str| each(t.writer_cpu_per_wall_s.get(mode).map_or(&[][..], |v| v), 2);
        cpu_rows.push(vec![
            s(&x.setup),
            num(per_cpu(&t.off_commits_per_s, t, "off"), 0),
            num(off_cpu, 0),
            num(on_cpu, 0),
            num(ratio(on_cpu, off_cpu), 2),
            share("off"),
            share("off_nockpt"),
            share("on"),
            each(&t.replicator_cpu_per_wall_s_on, 2),
        ]);
        rows.push(vec![
            s(&x.setup),
            s(t.rounds),
            n(t.off_mean, 0),
            n(t.off_nockpt_mean, 0),
            n(t.on_mean, 0),
            n(t.on_over_off, 2),
            n(t.on_over_off_nockpt, 2),
            each(&t.off_commits_per_s, 0),
            each(&t.off_nockpt_commits_per_s, 0),
            each(&t.on_commits_per_s, 0),
            num(crate::format::max(&t.drain_after_round_ms), 0),
        ]);
    }
    let secs = setups
        .first()
        .map_or(0.0, |x| x.throughput.seconds_per_round);
    out.push(format!(
        "\nEmbedded write throughput, one writer, single-row commits, {secs:?} s per round and mode:\n"
    ));
    out.push(table(
        &[
            "setup",
            "rounds",
            "off commits/s",
            "off, no checkpoints commits/s",
            "on commits/s",
            "on / off",
            "on / off, no checkpoints",
            "off per round",
            "off, no checkpoints per round",
            "on per round",
            "max drain after a round ms",
        ],
        &rows,
    ));
    out.push(
        "\nThe same rounds per CPU-second of the writer thread (what the commit path itself \
         costs), and the cores each part got per wall second:\n"
            .into(),
    );
    out.push(table(
        &[
            "setup",
            "off commits per writer CPU-s",
            "off, no checkpoints commits per writer CPU-s",
            "on commits per writer CPU-s",
            "on / off, no checkpoints",
            "writer cores, off",
            "writer cores, off no checkpoints",
            "writer cores, on",
            "rest of the process (replicator) cores, on",
        ],
        &cpu_rows,
    ));
    out.join("\n")
}

/// The example app under wrk: each run's endpoints against the plain run
/// of the same round.
pub fn chat_table(runs: &[ChatRun], conns: usize, seconds: u64, seed: usize) -> String {
    let mut rows = Vec::new();
    for x in runs {
        let plain = runs
            .iter()
            .find(|p| p.mode == "plain" && p.round == x.round);
        let label = if x.mode == "embedded" {
            "on (embedded, S3)"
        } else {
            "off (plain SQLite)"
        };
        let endpoints = [
            (
                Some(&x.read),
                plain.map(|p| &p.read),
                "GET /conversations/{id}",
            ),
            (
                Some(&x.write),
                plain.map(|p| &p.write),
                "POST /conversations/{id}/messages",
            ),
            (
                x.durable_write.as_ref(),
                plain.map(|p| &p.write),
                "POST .../messages?durable=true",
            ),
        ];
        for (w, base, name) in endpoints {
            let Some(w) = w else { continue };
            let errors = w.non_2xx + u64::from(w.socket_errors.is_some());
            rows.push(vec![
                s(x.round),
                s(label),
                s(name),
                n(w.p50_ms, 2),
                num(w.p99_ms, 2),
                n(w.rps, 0),
                num(ratio(Some(w.rps), base.map(|b| b.rps)), 2),
                s(errors),
            ]);
        }
    }
    format!(
        "wrk -t2 -c{conns} -d{seconds}s, conversation seeded with {seed} messages:\n\n{}",
        table(
            &[
                "round",
                "replication",
                "endpoint",
                "p50 ms",
                "p99 ms",
                "requests/s",
                "requests/s vs off",
                "errors",
            ],
            &rows,
        )
    )
}

/// The sidecar's HTTP sync bench.
pub fn http_sync_table(put_ms: f64, rows: &[SidecarDurable]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                s(&r.backend),
                s(r.writers),
                s(r.commits),
                num(r.sync_p50, 1),
                num(r.sync_p99, 1),
                num(r.total_p50, 1),
                num(r.total_p99, 1),
                n(r.per_s, 1),
                n(r.puts_per_commit, 2),
            ]
        })
        .collect();
    format!(
        "moto PUT round trip (200 B, p50): {put_ms:.1} ms\n\n{}",
        table(
            &[
                "backend",
                "writers",
                "durable commits",
                "sync p50 ms",
                "sync p99 ms",
                "commit+sync p50 ms",
                "commit+sync p99 ms",
                "commits/s",
                "PUTs per commit",
            ],
            &rows,
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::Wrk;

    fn wrk(rps: f64, socket_errors: Option<&str>) -> Wrk {
        Wrk {
            p50_ms: 1.5,
            p99_ms: None,
            rps,
            non_2xx: 2,
            socket_errors: socket_errors.map(String::from),
        }
    }

    fn chat(mode: &str, round: usize, read: f64, write: f64, durable: Option<f64>) -> ChatRun {
        ChatRun {
            mode: mode.into(),
            round,
            read: wrk(read, None),
            write: wrk(write, Some("timeout 1")),
            durable_write: durable.map(|d| wrk(d, None)),
            exit_code: 0,
        }
    }

    #[test]
    fn chat_rows_compare_with_the_plain_run_of_their_round() {
        let runs = [
            chat("plain", 0, 1000.0, 2000.0, None),
            chat("embedded", 0, 1500.0, 1000.0, Some(500.0)),
            chat("plain", 1, 3000.0, 4000.0, None),
            chat("embedded", 1, 1500.0, 1000.0, Some(1000.0)),
        ];
        let t = chat_table(&runs, 16, 8, 200);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "wrk -t2 -c16 -d8s, conversation seeded with 200 messages:"
        );
        // Header, separator, then 2 + 3 rows per round.
        assert_eq!(lines.len(), 4 + 10);
        assert_eq!(
            lines[6],
            "| 0 | on (embedded, S3) | GET /conversations/{id} | 1.50 | – | 1500 | 1.50 | 2 |"
        );
        // Durable writes against the plain writes; socket errors count once.
        assert_eq!(
            lines[8],
            "| 0 | on (embedded, S3) | POST .../messages?durable=true | 1.50 | – | 500 | 0.25 | 2 |"
        );
        assert!(lines[7].ends_with("| 1000 | 0.50 | 3 |"), "{}", lines[7]);
        assert!(lines[13].contains("| 1000 | 0.25 |"), "{}", lines[13]);
    }

    #[test]
    fn commits_per_writer_cpu_second_skip_rounds_without_cpu() {
        let mut t: ThroughputRun = serde_json::from_value(serde_json::json!({
            "what": "throughput", "seconds_per_round": 2.0, "rounds": 2,
            "on_commits_per_s": [900.0, 1100.0], "off_commits_per_s": [], "off_nockpt_commits_per_s": [],
            "off_nockpt_mean": 0.0, "on_over_off_nockpt": 0.0, "on_mean": 1000.0, "off_mean": 0.0,
            "on_over_off": 0.0, "drain_after_round_ms": [], "writer_cpu_per_wall_s": {"on": [0.9, 0.0]},
            "replicator_cpu_per_wall_s_on": [], "puts_per_round_on": []
        }))
        .unwrap();
        assert_eq!(per_cpu(&t.on_commits_per_s.clone(), &t, "on"), Some(1000.0));
        assert_eq!(per_cpu(&t.off_commits_per_s.clone(), &t, "off"), None);
        t.writer_cpu_per_wall_s.insert("on".into(), vec![0.5, 0.5]);
        assert_eq!(per_cpu(&t.on_commits_per_s.clone(), &t, "on"), Some(2000.0));
    }
}
