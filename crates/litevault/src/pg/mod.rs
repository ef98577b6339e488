//! PostgreSQL export and import.
//!
//! # Layout
//!
//! Pure (no I/O), unit-tested next to the code:
//! - [`types`]: the type mapping (declared type + stored values + ORM + overrides),
//! - [`value`]: SQLite values to binary COPY fields and back, refusing bad values
//!   (encoder, decoder, date and time text, numeric in their own files),
//! - [`checksum`]: the per-table content checksum both sides compute,
//! - [`copy`]: binary COPY framing,
//! - [`ddl`], [`expr`], [`ident`]: the schema model, DDL, SQL rewriting, quoting,
//! - [`select`]: `--table` / `--exclude-table` globs and the foreign-key check,
//! - [`notice`]: PostgreSQL notices summarised per kind (and the connection
//!   driver that collects them).
//!
//! I/O:
//! - [`source`]: reads a SQLite schema and value statistics,
//! - [`mod@export`]: SQLite -> PostgreSQL, verified (planning, loading and
//!   reading back in their own files),
//! - [`mod@import`]: PostgreSQL -> SQLite, verified (the catalog read, the SQLite
//!   DDL and the load in their own files),
//! - [`tls`]: rustls for the connections, libpq's `sslmode` meanings.

pub mod checksum;
pub mod copy;
pub mod ddl;
pub mod export;
pub mod expr;
pub mod ident;
pub mod import;
pub mod notice;
pub mod select;
pub mod source;
pub mod tls;
pub mod types;
pub mod value;

pub use export::{
    ExportError, ExportMode, ExportOptions, ExportPlan, ExportReport, IfExists, OnBadRow, export,
};
pub use import::{ImportError, ImportOptions, ImportReport, import};
pub use notice::NoticeSummary;
pub use select::{SelectionError, TableSelection};
pub use types::{Orm, PgType};
