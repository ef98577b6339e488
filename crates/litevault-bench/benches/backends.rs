//! The backend matrix: SQLite on local disk, SQLite replicated by an
//! embedded litevault, SQLite on an s3fs-mounted bucket (DELETE and WAL
//! journal), PostgreSQL on loopback and PostgreSQL behind a delaying proxy,
//! every workload of `litevault_bench`, on a lab this bench starts and
//! cleans up by itself (`litevault_bench::lab`).
//!
//! - `cargo bench --bench backends`: the full run (small and large
//!   datasets). Criterion groups per workload and dataset, one benchmark per
//!   backend (HTML in `target/criterion/report/index.html`); the engine's
//!   p50/p95/p99 per backend × workload × dataset in
//!   `target/bench-backends/report.{json,html,md}`.
//! - `cargo bench --bench backends -- --test`, `cargo test --benches`,
//!   `cargo nextest run --all-targets`: quick mode, every backend and
//!   workload exercised a few times on the tiny dataset; any error, or a
//!   backend that could not run, fails it. nextest runs each listed
//!   benchmark in its own process, so the whole matrix is listed as one
//!   entry (`backends/matrix`) and runs on one lab.
//!
//! `LITEVAULT_NO_FUSE=1` leaves out the mounted-bucket backends (said in the
//! report); `LITEVAULT_LAB_RTT=25ms` changes the round trip.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use criterion::{BenchmarkFilter, Criterion, SamplingMode};
use litevault_bench::lab::{FuseStatus, Lab, LabOptions};
use litevault_bench::postgres::PgBackend;
use litevault_bench::report;
use litevault_bench::results::{BenchReport, NetworkModel, Skipped};
use litevault_bench::sqlite::{JournalMode, SqliteBackend, VaultBackend};
use litevault_bench::{Backend, Op, OpGen, RunOptions, Setup, Span, measure};

/// The one entry nextest sees.
const MATRIX: &str = "backends/matrix";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        // Nothing is ignored; everything else is one benchmark.
        if !args.iter().any(|a| a == "--ignored") {
            println!("{MATRIX}: benchmark");
        }
        return;
    }
    // Criterion's own rule: without --bench (cargo test, nextest) or with
    // --test, run in test mode.
    let quick = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test");
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    if args.iter().any(|a| a == MATRIX) {
        c = c.with_benchmark_filter(BenchmarkFilter::AcceptAll);
    }
    match run_matrix(&mut c, quick) {
        Ok(()) => c.final_summary(),
        Err(e) => {
            eprintln!("backends bench failed: {e:#}");
            std::process::exit(1);
        }
    }
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        // The workspace's target folder, two levels above this crate.
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

fn run_matrix(c: &mut Criterion, quick: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut opts = if quick {
        RunOptions {
            warmup: Span::Ops(1),
            measure: Span::Ops(3),
            ..RunOptions::quick()
        }
    } else {
        RunOptions::default()
    };
    let mut lab_opts = LabOptions::new(LabOptions::default_base_dir()).from_env()?;
    lab_opts.pg_shared_buffers = Some(opts.pg_shared_buffers.clone());
    let lab = Lab::start(&lab_opts).context("starting the bench lab")?;
    for l in lab.leftovers_cleaned() {
        eprintln!("cleaned after a previous run: {l}");
    }
    let rtt_ms = lab.rtt().as_secs_f64() * 1000.0;
    opts.network = NetworkModel {
        rtt_ms: Some(rtt_ms),
        description: lab.network_description(),
    };
    let work = lab.run_dir().join("work");
    std::fs::create_dir_all(&work)?;

    let mut skipped: Vec<Skipped> = Vec::new();
    let mut backends: Vec<Box<dyn Backend>> = vec![
        Box::new(SqliteBackend::local(work.join("sqlite-local"))),
        Box::new(
            VaultBackend::new(
                work.join("vault"),
                &lab.replica_url("litevault-embedded", true),
            )
            .with_credentials(lab.credentials())
            .named(
                "litevault-embedded",
                "SQLite + litevault (embedded)",
                &format!(
                    "SQLite in WAL mode on local disk replicated by an embedded litevault to the lab's S3 server over {rtt_ms} ms RTT"
                ),
            ),
        ),
    ];
    match lab.fuse() {
        FuseStatus::Mounted(mnt) => {
            for (mode, name) in [(JournalMode::Delete, "delete"), (JournalMode::Wal, "wal")] {
                let dir = mnt.join(format!("bench-{name}"));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {} on the mount", dir.display()))?;
                backends.push(Box::new(SqliteBackend::on_mount(
                    dir,
                    mode,
                    work.join(format!("scratch-{name}")),
                )));
            }
        }
        other => {
            let reason = match other {
                FuseStatus::Disabled(w) | FuseStatus::Unavailable(w) => w.clone(),
                _ => format!("{other:?}"),
            };
            if quick && !matches!(other, FuseStatus::Disabled(_)) {
                anyhow::bail!(
                    "the bucket could not be mounted: {reason}. Install s3fs and FUSE \
                     (`apt-get install -y s3fs fuse3`) or set LITEVAULT_NO_FUSE=1 to leave \
                     the mounted-bucket backends out"
                );
            }
            eprintln!("no mounted-bucket backends: {reason}");
            for id in ["sqlite-fuse-delete", "sqlite-fuse-wal"] {
                skipped.push(Skipped {
                    backend: id.into(),
                    dataset: None,
                    workload: None,
                    reason: reason.clone(),
                });
            }
        }
    }
    if let (Some(direct), Some(proxied)) = (lab.postgres_url(false), lab.postgres_url(true)) {
        backends.push(Box::new(PgBackend::new(&direct).named(
            "postgres",
            "PostgreSQL, loopback",
            "PostgreSQL on 127.0.0.1, no added delay: a database on the same host",
        )));
        backends.push(Box::new(PgBackend::new(&proxied).named(
            "pg-proxied",
            &format!("PostgreSQL over {rtt_ms} ms RTT"),
            &format!(
                "PostgreSQL behind a TCP proxy adding {rtt_ms} ms per round trip: a managed database across a VPC"
            ),
        )));
    }

    let mut report = BenchReport {
        litevault_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        host: litevault_bench::run::host_info(),
        network: opts.network.clone(),
        config: opts.config(),
        backends: Vec::new(),
        loads: Vec::new(),
        measurements: Vec::new(),
        skipped,
    };
    let mut op_errors: Vec<String> = Vec::new();
    for dataset in &opts.datasets {
        let setup = Setup {
            dataset: dataset.clone(),
            sqlite_cache_kib: opts.sqlite_cache_kib,
            sessions: opts.mixed_readers + 1,
        };
        let mut loaded: Vec<usize> = Vec::new();
        for (i, b) in backends.iter_mut().enumerate() {
            let id = b.info().id;
            eprintln!("loading {} into {id}", dataset.name);
            match rt.block_on(b.load(&setup)) {
                Ok(l) => {
                    report.loads.push(l);
                    loaded.push(i);
                }
                Err(e) => report.skipped.push(Skipped {
                    backend: id,
                    dataset: Some(dataset.name.clone()),
                    workload: None,
                    reason: e.to_string(),
                }),
            }
        }
        // The engine's numbers (p50/p95/p99), every workload in its order.
        for &i in &loaded {
            let b = backends[i].as_ref();
            for &w in &opts.workloads {
                eprintln!("measuring {} {} on {}", w.name(), dataset.name, b.info().id);
                match rt.block_on(measure(b, w, dataset, &opts)) {
                    Ok(ms) => report.measurements.extend(ms),
                    Err(e) => report.skipped.push(Skipped {
                        backend: b.info().id,
                        dataset: Some(dataset.name.clone()),
                        workload: Some(w.name().to_string()),
                        reason: e.to_string(),
                    }),
                }
            }
        }
        // Criterion: one group per workload, one benchmark per backend.
        for (k, op) in [Op::PointRead, Op::RangeScan, Op::PageLoad, Op::Insert]
            .into_iter()
            .enumerate()
        {
            let mut g = c.benchmark_group(format!("{}/{}", op.name(), dataset.name));
            g.sampling_mode(SamplingMode::Flat);
            for (j, &i) in loaded.iter().enumerate() {
                let b = backends[i].as_ref();
                let id = b.info().id;
                let mut session = match rt.block_on(b.session()) {
                    Ok(s) => s,
                    Err(e) => {
                        op_errors.push(format!("{id}: no session: {e}"));
                        continue;
                    }
                };
                // Streams of their own, so inserts never collide with the
                // engine's (which use streams below 2048).
                let mut ops = OpGen::new(dataset.clone(), 4096 + (k * 64 + j) as u64);
                let mut first_error: Option<String> = None;
                g.bench_function(&id, |bencher| {
                    bencher.iter_custom(|iters| {
                        rt.block_on(async {
                            let mut total = Duration::ZERO;
                            for _ in 0..iters {
                                match ops.run(op, session.as_mut()).await {
                                    Ok(d) => total += d,
                                    Err(e) => {
                                        first_error.get_or_insert_with(|| e.to_string());
                                    }
                                }
                            }
                            total
                        })
                    })
                });
                if let Some(e) = first_error {
                    op_errors.push(format!("{id} {} {}: {e}", op.name(), dataset.name));
                }
            }
            g.finish();
        }
    }
    for b in backends.iter_mut() {
        let mut info = b.info();
        if let Err(e) = rt.block_on(b.close()) {
            info.notes.push(format!("cleanup failed: {e}"));
        }
        report.backends.push(info);
    }

    let out = target_dir().join("bench-backends");
    std::fs::create_dir_all(&out)?;
    let name = if quick { "report-quick" } else { "report" };
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(out.join(format!("{name}.html")), report::html(&report))?;
    std::fs::write(out.join(format!("{name}.md")), report::markdown(&report))?;
    println!("{}", report::text_table(&report));
    for l in report::recommend(&report).lines {
        println!("{l}");
    }
    println!(
        "\nreport: {}/{name}.{{json,html,md}}; criterion: {}/criterion/report/index.html",
        out.display(),
        target_dir().display()
    );
    lab.shutdown().context("stopping the bench lab")?;

    if quick {
        let mut problems = op_errors;
        for m in &report.measurements {
            if m.errors > 0 || m.samples == 0 {
                problems.push(format!(
                    "{} {} {}: {} errors, {} samples, first: {}",
                    m.backend,
                    m.workload,
                    m.dataset,
                    m.errors,
                    m.samples,
                    m.first_error.as_deref().unwrap_or("-")
                ));
            }
        }
        let no_fuse_ok = !lab_opts.fuse;
        for s in &report.skipped {
            if !(no_fuse_ok && s.backend.starts_with("sqlite-fuse")) {
                problems.push(format!("{} was not measured: {}", s.backend, s.reason));
            }
        }
        if !problems.is_empty() {
            anyhow::bail!("quick run found problems:\n  {}", problems.join("\n  "));
        }
    } else if !op_errors.is_empty() {
        eprintln!(
            "errors during the criterion benchmarks:\n  {}",
            op_errors.join("\n  ")
        );
    }
    Ok(())
}
