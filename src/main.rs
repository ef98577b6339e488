//! The `litevault` binary: continuous SQLite replication to object storage
//! (S3, GCS, Azure, a local folder), restores of any point in time verified
//! by checksums, and a way to PostgreSQL and back. The library it drives is
//! the `litevault` crate; this package adds the command line (clap), the
//! progress bars (indicatif) and the log output (tracing-subscriber).
//!
//! # Install and try
//!
//! ```sh
//! cargo install --path .          # one `litevault` binary, every subcommand
//! litevault demo                  # write, replicate, delete, restore, compare
//! ```
//!
//! # Use
//!
//! ```sh
//! # ship every commit of app.db to a bucket (final sync on SIGTERM),
//! # or run the app under it as a sidecar
//! litevault replicate app.db s3://bucket/app
//! litevault replicate app.db s3://bucket/app --exec "my-app --port 8080"
//! # restore the latest state, or a point in time, verified
//! litevault restore s3://bucket/app -o app.db
//! litevault restore s3://bucket/app -o app.db --timestamp 2026-12-06T14:02:00Z
//! # is the replica sound and current? (exit codes for cron)
//! litevault verify app.db s3://bucket/app
//! ```
//!
//! `litevault --help` lists every subcommand and `litevault CMD --help` its
//! flags; the README has the configuration file, the HTTP surface and the
//! deploy recipes.
//!
//! # Layout
//!
//! `main` only calls `cli::main`; `cli/mod.rs` parses the command line and
//! dispatches to one file per subcommand (`replicate.rs`, `restore.rs`,
//! `verify.rs`, `export.rs`, ...), each a thin layer that turns flags into
//! the library's options and its errors into exit codes and messages.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
