//! `litevault-bench embedded`: litevault in-process against the sidecar and
//! Litestream, and the example app under wrk. Prints markdown tables and
//! writes its section of the results file (every sample).
//!
//! - `matrix`, for each network setup (the lab's moto server on 127.0.0.1
//!   directly, and through the lab's proxy adding a 10 ms round trip), each
//!   on a fresh server: bare PUT latency of the store (object_store client,
//!   4 KiB); replication lag p50/p99 of the embedded vault (acknowledged by
//!   `wait_replicated`, and visible in a listing), the sidecar (`litevault
//!   replicate` beside a writer in this process) and Litestream 0.5.17;
//!   durable-commit latency p50/p99 with 1, 8 and 64 writers, embedded
//!   `transaction_durable` against sidecar commit + `POST
//!   /v1/sync?db=app&wait=true`, commits/s, PUTs per commit; embedded write
//!   throughput with replication on and off (interleaved rounds). The
//!   embedded measurements run in `embedded-driver` processes (this program
//!   again), so that their CPU figures are the vault's alone.
//! - `chat`: `examples/chat.rs` under wrk (see [`crate::chat`]).
//! - `all`: both.
//!
//! It builds nothing (see [`BUILD`]) and copies the programs into the work
//! folder, so a rebuild during the run changes nothing. Everything it starts
//! (the lab's moto servers and proxies, replicators, the app, wrk, the
//! driver) is stopped by PID at the end, also on failure, Ctrl-C or
//! `--deadline`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use litevault_bench::lab::LabOptions;
use serde::Serialize;
use serde_json::json;

use crate::common::{ResultsFile, arm_deadline};
use crate::tools::{BUILD, Tools, beside_me, machine_info, snapshot};

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum What {
    /// The embedded mode against the sidecar and Litestream.
    Matrix,
    /// The example app under wrk.
    Chat,
    /// matrix, then chat.
    All,
}

/// Embedded mode: litevault in-process against the sidecar and Litestream,
/// and the example app under wrk.
#[derive(clap::Args, Debug, Serialize)]
pub struct Args {
    /// matrix, chat, or all (both).
    #[arg(value_enum)]
    pub command: What,
    /// Scratch space (moto, databases, logs, the program copies).
    #[arg(long, default_value = "/tmp/litevault-bench-embedded")]
    pub workdir: PathBuf,
    /// Results JSON (default WORKDIR/results.json); each command replaces
    /// its own section.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A smoke run: few samples (5 lag commits, 20 PUTs, 40 durable
    /// commits, 1 throughput round of 1 s, 2 s of wrk, 20 seeded messages).
    #[arg(long)]
    pub quick: bool,
    /// Lag samples per tool and setup.
    #[arg(long, default_value_t = 30)]
    pub commits: usize,
    /// Seconds between lag commits, the same for every tool.
    #[arg(long, default_value_t = 1.2)]
    pub spacing: f64,
    /// Lag commits not counted at the start of each run, every tool.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// PUTs timed per setup.
    #[arg(long, default_value_t = 100)]
    pub puts: usize,
    /// Writer counts of the durable-commit rows.
    #[arg(long, default_value = "1,8,64", value_delimiter = ',')]
    pub writers: Vec<usize>,
    /// Durable commits per row (at least 8 per writer).
    #[arg(long, default_value_t = 200)]
    pub durable_commits: usize,
    /// Embedded group-commit window (ReplicateOptions::commit_window).
    #[arg(long, default_value_t = 0)]
    pub commit_window_ms: u64,
    /// Throughput rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds per throughput round and mode.
    #[arg(long, default_value_t = 2.0)]
    pub round_seconds: f64,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 8)]
    pub chat_seconds: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 16)]
    pub chat_conns: usize,
    /// Rounds of plain then embedded.
    #[arg(long, default_value_t = 1)]
    pub chat_rounds: usize,
    /// Messages in the conversation.
    #[arg(long, default_value_t = 200)]
    pub chat_seed: usize,
    /// litevault binary (default: beside this program).
    #[arg(long)]
    pub litevault: Option<PathBuf>,
    /// litestream binary (default: from PATH).
    #[arg(long)]
    pub litestream: Option<PathBuf>,
    /// The example app (default: examples/chat beside this program).
    #[arg(long)]
    pub chat: Option<PathBuf>,
    /// Stop everything after this many seconds.
    #[arg(long, default_value_t = 1200.0)]
    pub deadline: f64,
}

impl Args {
    /// `--quick` sets the smoke-run sizes, whatever else was given.
    pub fn apply_quick(&mut self) {
        if self.quick {
            (self.commits, self.puts, self.durable_commits) = (5, 20, 40);
            (self.rounds, self.round_seconds) = (1, 1.0);
            (self.chat_seconds, self.chat_seed) = (2, 20);
        }
    }
}

/// The lab of one setup: moto and its proxy, no mount, no PostgreSQL.
pub fn lab_options(workdir: &Path) -> LabOptions {
    LabOptions {
        rtt: crate::matrix::RTT,
        fuse: false,
        postgres: false,
        ..LabOptions::new(workdir.join("lab"))
    }
}

/// The programs a run uses, copied into `WORKDIR/bin`.
pub struct Bins {
    pub tools: Tools,
    /// This program, run as `embedded-driver`.
    pub driver: PathBuf,
    pub chat: PathBuf,
}

pub fn main(mut args: Args) -> anyhow::Result<()> {
    args.apply_quick();
    if args.rounds == 0 || args.writers.is_empty() {
        anyhow::bail!("--rounds and --writers need at least one");
    }
    arm_deadline(args.deadline);
    std::fs::create_dir_all(&args.workdir)
        .with_context(|| format!("creating {}", args.workdir.display()))?;
    let workdir = args.workdir.canonicalize()?;
    let mut results = ResultsFile::open(
        args.out
            .clone()
            .unwrap_or_else(|| workdir.join("results.json")),
    )?;
    let started = Instant::now();
    let tools = Tools::new(
        args.litevault.as_deref(),
        args.litestream.as_deref(),
        &workdir,
    )?;
    let bindir = workdir.join("bin");
    let me = std::env::current_exe().context("locating this program")?;
    let chat_src = match &args.chat {
        Some(p) => p.clone(),
        None => beside_me("examples/chat")?,
    };
    let bins = Bins {
        driver: snapshot(&me, &bindir, BUILD)?,
        chat: snapshot(&chat_src, &bindir, BUILD)?,
        tools,
    };
    let commands: &[&str] = match args.command {
        What::Matrix => &["matrix"],
        What::Chat => &["chat"],
        What::All => &["matrix", "chat"],
    };
    for &c in commands {
        let t = Instant::now();
        let mut section = if c == "matrix" {
            crate::matrix::run(&args, &bins, &workdir)?
        } else {
            crate::chat::run(&args, &bins.chat, &workdir)?
        };
        let elapsed = (t.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        section["machine"] = machine_info(&bins.tools);
        section["args"] = json!(args);
        section["elapsed_s"] = json!(elapsed);
        let markdown = section["markdown"].as_str().unwrap_or("").to_string();
        results.set(c, section)?;
        println!("\n## {c}\n\n{markdown}\n");
        println!("({c}: {elapsed} s; results in {})", results.path.display());
    }
    eprintln!("total {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
