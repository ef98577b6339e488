//! The integration tests of the whole: one test crate, one module per file
//! (`tests/it/<file>.rs`), so the shared harness in `support/` and the
//! dependencies are compiled and linked once. A test's full name is
//! `it::<file>::<function>` (nextest) or `<file>::<function>` (the test
//! binary's own filter).
//!
//! Tests that need an external program or server (the moto S3 server,
//! Azurite, fake-gcs-server, PostgreSQL, litestream, Chromium, s3fs and FUSE,
//! the bench lab) are marked `#[ignore = "needs ...: run scripts/test.sh"]`;
//! plain `cargo test` runs the rest. With `LITEVAULT_TEST_NO_SERVICES=1`
//! every service starter in `support` panics, which is how scripts/test.sh
//! proves that nothing unmarked needs a service.

mod support;

mod bench_cli;
mod bench_engine;
mod bench_lab;
mod cli;
mod cloud_backends;
mod committed_wal;
mod config;
mod crash;
mod deploy;
mod embedded;
mod faults;
mod fleet;
mod follow;
mod hostile_replicas;
mod http;
mod keeper;
mod lease;
mod litestream_fixture;
mod litestream_handoff;
mod litestream_interop;
mod litestream_v03;
mod local_faults;
mod logging;
mod ltx_golden;
mod pg_export;
mod pg_import;
mod pg_tls;
mod retention;
mod s3_options;
mod scenarios;
mod sqlite_wal;
mod verify;
