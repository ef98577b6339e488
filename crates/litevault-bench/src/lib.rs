//! Measurement tools shared by `litevault bench`, the criterion benches and
//! the `litevault-bench` binary (the embedded-mode runs, the sidecar's HTTP
//! sync bench, the export benchmark's database generator:
//! `src/bin/litevault-bench/`).
//!
//! - [`proxy`]: a TCP proxy adding a fixed round trip, the network model used
//!   for object stores, FUSE-mounted buckets and managed PostgreSQL.
//! - [`lab`]: the throwaway environment of `cargo bench --bench backends`
//!   and of the `litevault-bench` binary (S3 server, proxies, s3fs mount,
//!   PostgreSQL, one file each, and the programs a benchmark starts beside
//!   them), cleaned up by itself.
//! - [`report`]: a [`BenchReport`] as a text table, a recommendation
//!   derived from the numbers, and a self-contained HTML page with SVG charts
//!   (one file each).
//! - [`backend`]: the [`Backend`] trait every storage backend implements;
//!   [`sqlite`] (local disk, a mounted bucket, litevault-embedded) and
//!   [`postgres`] implement it.
//! - [`workload`]: the data (a seeded chat application: users,
//!   conversations, participants, messages) and the operations measured
//!   through the [`Session`] trait.
//! - [`stats`]: latency recording and percentiles.
//! - [`run`](mod@run): the runner, [`run()`] over every backend × dataset ×
//!   workload, and [`BenchError`].
//! - [`results`]: [`BenchReport`], the serde data model the report and the
//!   JSON output are made from.
//!
//! ```no_run
//! # async fn demo() -> Result<(), litevault_bench::BenchError> {
//! use litevault_bench::{Backend, RunOptions, run};
//! use litevault_bench::sqlite::{SqliteBackend, VaultBackend};
//! let backends: Vec<Box<dyn Backend>> = vec![
//!     Box::new(SqliteBackend::local("/tmp/bench")),
//!     Box::new(VaultBackend::new("/tmp/bench-vault", "file:///tmp/bench-replica")),
//! ];
//! let report = run(backends, &RunOptions::quick()).await?;
//! println!("{:?}", report.ratio("litevault-embedded", "sqlite-local", "point_read", "tiny"));
//! # Ok(()) }
//! ```

pub mod backend;
pub mod lab;
pub mod postgres;
pub mod proxy;
pub mod report;
pub mod results;
pub mod run;
pub mod sqlite;
pub mod stats;
pub mod workload;

pub use backend::{Backend, Setup};
pub use results::BenchReport;
pub use run::{BenchError, RunOptions, Span, measure, run};
pub use workload::{DatasetSpec, Op, OpGen, Session, Workload};
