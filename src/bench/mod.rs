//! Measurement tools shared by `litevault bench`, the criterion benches and
//! the benchmark scripts.
//!
//! - [`proxy`]: a TCP proxy adding a fixed round trip, the network model used
//!   for object stores, FUSE-mounted buckets and managed PostgreSQL.
//! - [`lab`]: the throwaway environment of `cargo bench --bench backends`
//!   (S3 server, proxies, s3fs mount, PostgreSQL), cleaned up by itself.

pub mod lab;
pub mod proxy;
