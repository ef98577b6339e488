//! `litevault-bench`: the benchmarks that measure litevault alone (the
//! comparisons with other programs, Litestream over months or pgloader, are
//! scripts in `scripts/`).
//!
//! ```text
//! cargo build --release --bin litevault --bin litevault-bench --example chat
//! target/release/litevault-bench embedded all            # about 7 minutes
//! target/release/litevault-bench embedded all --quick    # smoke run, about 2 minutes
//! target/release/litevault-bench http-sync               # about 1 minute
//! target/release/litevault-bench pg-gen app.db --scale 1.0
//! ```
//!
//! Layout: pure code (`format` percentiles and tables, `tables` the reports,
//! `wrk` its output, `lister` the listing parsers, `pyrandom` Python's
//! generator, `pg_gen`'s row makers, `figures` the result types) and the
//! I/O at the edge (`embedded`, `matrix`, `chat`, `sidecar`, `http_sync`,
//! `driver` the in-process measurements, `measured` RSS and CPU of a child,
//! `tools` the programs, `common` folders, waiting and the results file).
//! Processes and the S3 server come from `litevault_bench::lab`.

mod chat;
mod common;
mod driver;
mod embedded;
mod figures;
mod format;
mod http_sync;
mod lister;
mod matrix;
mod measured;
mod pg_gen;
mod pyrandom;
mod sidecar;
mod tables;
mod tools;
mod wrk;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmarks of litevault alone: the embedded mode, the sidecar's HTTP
/// sync, and the export benchmark's data.
#[derive(Parser, Debug)]
#[command(name = "litevault-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Embedded mode against the sidecar and Litestream (matrix), and the
    /// example app under wrk (chat); markdown tables and a results JSON.
    Embedded(embedded::Args),
    /// One in-process measurement of the embedded mode, printed as JSON
    /// (what `embedded` runs in its own process).
    EmbeddedDriver(driver::Args),
    /// Sidecar durable commits: commit + POST /v1/sync?wait=true, file://
    /// and S3, by writer count.
    HttpSync(http_sync::Args),
    /// Writes the deterministic database of the PostgreSQL export benchmark.
    PgGen(pg_gen::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Embedded(a) => embedded::main(a),
        Command::EmbeddedDriver(a) => driver::main(a),
        Command::HttpSync(a) => http_sync::main(a),
        Command::PgGen(a) => pg_gen::main(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("litevault-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
