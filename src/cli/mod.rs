//! The `litevault` command line: one file per subcommand, each a thin layer
//! over a library function.

mod bench;
mod bench_lab;
mod config_cmd;
mod delay_proxy;
mod demo;
mod export;
mod import;
mod logging;
mod ltx_cmd;
mod placeholder;
mod progress;
mod replicate;
mod restore;
mod status;
mod verify;
mod watched;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// litevault: continuous SQLite replication to object storage, compatible
/// with Litestream v0.5.
#[derive(Parser, Debug)]
#[command(name = "litevault", version, about, long_about = None, after_help = logging::HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: logging::Flags,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replicate a database to a replica until SIGINT/SIGTERM (final sync on exit).
    Replicate(replicate::Args),
    /// Restore a database from a replica, verified.
    Restore(restore::Args),
    /// What each replicator last reported: TXID, lag, uploads, requests.
    Status(status::Args),
    /// Check that the replica restores to the live database (cron-able:
    /// exit 0 ok, 2 damaged, 3 behind, 4 diverged, 1 could not run).
    Verify(verify::Args),
    /// List the LTX files a replica holds.
    Ltx(ltx_cmd::Args),
    /// Create a database, replicate it while writing, delete it, restore it, compare.
    Demo(demo::Args),
    /// Check the configuration file, or explain every resolved setting.
    Config(config_cmd::Args),
    /// Export a database (or a replica's point in time) to PostgreSQL, verified.
    Export(export::Args),
    /// Import a PostgreSQL schema into a new SQLite database (WAL mode), verified.
    Import(import::Args),
    /// Forward TCP to a server adding a fixed round trip (a network model for measurements).
    DelayProxy(delay_proxy::Args),
    /// Measure SQLite (local, replicated, on a mounted bucket) and PostgreSQL
    /// with a web app's workloads; p50/p95/p99 and a recommendation.
    #[command(long_about = bench::LONG_ABOUT)]
    Bench(bench::Args),
    /// Start the benchmark lab (S3 server, delay proxies, s3fs mount, PostgreSQL) until Ctrl-C.
    #[command(long_about = bench_lab::LONG_ABOUT)]
    BenchLab(bench_lab::Args),
}

impl Command {
    /// The config file this command reads, if it reads one.
    fn config_file(&self) -> Option<logging::ConfigFile<'_>> {
        match self {
            Command::Replicate(a) => a.config_file(),
            Command::Restore(a) => a.config_file(),
            Command::Status(a) => a.config_file(),
            Command::Verify(a) => a.config_file(),
            Command::Config(a) => Some(a.config_file()),
            Command::Ltx(_)
            | Command::Demo(_)
            | Command::Export(_)
            | Command::Import(_)
            | Command::DelayProxy(_)
            | Command::Bench(_)
            | Command::BenchLab(_) => None,
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The log is set up before anything is logged, from the flags, the
    // environment and the `logging` section of the config file the
    // subcommand is about to read.
    let from_file = cli
        .command
        .config_file()
        .and_then(|f| logging::from_config_file(&f));
    let env = std::env::var(logging::ENV).ok();
    logging::init(&logging::plan(&cli.log, env.as_deref(), from_file.as_ref()));
    // A short command whose output goes to a pipe that closes early
    // (`litevault ltx URL | head`) ends quietly, as Unix tools do, instead
    // of panicking in println!. The long-running ones keep SIGPIPE ignored:
    // a closed log pipe must not stop replication.
    let long_running = match &cli.command {
        Command::Replicate(_) | Command::DelayProxy(_) | Command::BenchLab(_) => true,
        Command::Restore(a) => a.follows(),
        _ => false,
    };
    if !long_running {
        // SAFETY: restores the default disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // Memory: one malloc arena per thread would grow with the blocking
    // threads that many databases use; two are plenty for this workload.
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // Buffers of 256 KiB and more (the LTX files of a busy second, the
        // pages of a checkpoint's resync) are mapped and unmapped on their
        // own. By default glibc raises this threshold to the largest block
        // freed (up to 32 MiB), after which such buffers come from the heap
        // and their memory stays with the process: under a steady writer
        // that was a 32 MiB step in RSS once the WAL had grown.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
    // No up-front page-cache block per SQLite connection: with a thousand
    // databases (two connections each) that block alone was 170 MiB.
    litevault::db::lean_sqlite_memory();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // SQLite work and file I/O run on blocking threads; a handful serve
        // many databases on a small machine.
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Replicate(a) => replicate::run(a).await,
            Command::Restore(a) => restore::run(a).await,
            Command::Ltx(a) => ltx_cmd::run(a).await,
            Command::Status(a) => status::run(a).await,
            Command::Verify(a) => verify::run(a).await,
            Command::Demo(a) => demo::run(a).await,
            Command::Config(a) => config_cmd::run(a).await,
            Command::Export(a) => export::run(a).await,
            Command::Import(a) => import::run(a).await,
            Command::DelayProxy(a) => delay_proxy::run(a).await,
            Command::Bench(a) => bench::run(a).await,
            Command::BenchLab(a) => bench_lab::run(a).await,
        }
    });
    // A blocking task still running now (a resync's page comparison that
    // the final sync's time limit cut short) is abandoned rather than
    // waited for: the local store and state files are written to survive
    // a kill at any moment, and waiting would stretch a stop past the
    // limit the operator set.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed
/// when this is called, not when the future is first polled, so a signal that
/// arrives while the caller is still starting up is not lost.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Prints what an export or import could not carry over, with its SQL.
pub(crate) fn print_unported(problems: &[litevault::pg::ddl::Problem]) {
    for p in problems {
        println!(
            "NOT CARRIED OVER: {}: {}\n    {}",
            p.object,
            p.reason,
            p.sqlite_sql.replace('\n', "\n    ")
        );
    }
}

/// Width of the table-name column of a verification table.
pub(crate) fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(str::len).max().unwrap_or(5).max(5)
}
