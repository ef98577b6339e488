//! Measurement tools shared by `litevault bench`, the criterion benches and
//! the benchmark scripts.
//!
//! - [`proxy`]: a TCP proxy adding a fixed round trip, the network model used
//!   for object stores, FUSE-mounted buckets and managed PostgreSQL.

pub mod proxy;
