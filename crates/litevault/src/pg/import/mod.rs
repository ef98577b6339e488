//! `import`: PostgreSQL -> SQLite. Reads the catalog of one schema (tables,
//! columns, primary keys, unique constraints, foreign keys, checks, indexes,
//! defaults), creates the tables in a new SQLite file, streams every table
//! over binary COPY, verifies row counts and checksums on both sides, and
//! publishes the file in WAL mode (written to `<out>.tmp`, renamed at the end).
//!
//! This file holds the settings, the errors, the report and [`import`]
//! itself; `schema` reads the catalog, `create` writes the SQLite DDL and
//! `load` fills and checks the SQLite file.

mod create;
mod load;
mod schema;

pub use create::{rowid_pk, sqlite_create_table, sqlite_index, strip_casts};
pub use schema::{ImportColumn, ImportForeignKey, ImportTable, map_default, map_pg_column};

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checksum::TableChecksum;
use super::ddl::Problem;
use super::ident::{qualified, quote};
use super::notice::{NoticeLog, NoticeSummary, connect_collecting};
use super::select::{SelectionError, Source, TableSelection, check_foreign_keys};
use super::types::PgType;
use crate::redact::redact_url as redact;
use load::write_sqlite;
use schema::read_catalog;

/// Errors of an import.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path} already exists; remove it or choose another output path")]
    OutputExists { path: PathBuf },
    #[error("PostgreSQL error while {doing}: {source}")]
    Postgres {
        doing: String,
        source: tokio_postgres::Error,
    },
    #[error("SQLite error on {path} while {doing}: {source}")]
    Sqlite {
        path: PathBuf,
        doing: String,
        source: rusqlite::Error,
    },
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: super::export::ConnectError,
    },
    #[error("schema {schema:?} holds no tables in {url}; check the URL and --schema")]
    NoTables { schema: String, url: String },
    #[error("cannot decode a {pg_type} value of {table}.{column} sent by PostgreSQL")]
    Decode {
        table: String,
        column: String,
        pg_type: String,
    },
    #[error("reading {table:?}: {source}")]
    CopyFormat {
        table: String,
        source: super::copy::CopyFormatError,
    },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Selection(#[from] SelectionError),
    #[error("import worker failed: {0}")]
    Worker(String),
}

impl From<crate::task::TaskFailed> for ImportError {
    fn from(e: crate::task::TaskFailed) -> Self {
        ImportError::Worker(e.to_string())
    }
}

fn pg(doing: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ImportError {
    let doing = doing.into();
    move |source| ImportError::Postgres { doing, source }
}

/// Import settings.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// PostgreSQL schema to import.
    pub schema: String,
    /// The tables to import (every table of the schema by default); see
    /// [`crate::pg::select`].
    pub tables: TableSelection,
    /// Where to report the rows copied (nowhere by default).
    pub progress: crate::progress::ProgressSink,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            schema: "public".into(),
            tables: TableSelection::default(),
            progress: crate::progress::ProgressSink::none(),
        }
    }
}

/// One table's verification.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImportTableReport {
    pub table: String,
    pub postgres: TableChecksum,
    pub sqlite: TableChecksum,
    pub verified: bool,
}

/// What an import did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ImportReport {
    /// The ORM whose migrations made the schema (its bookkeeping table
    /// names it): values are stored as it stores them on SQLite.
    pub orm: String,
    pub tables: Vec<ImportTableReport>,
    pub warnings: Vec<String>,
    pub problems: Vec<Problem>,
    /// PostgreSQL's notices, one entry per kind.
    pub notices: Vec<NoticeSummary>,
    pub millis: u64,
}

impl ImportReport {
    /// Every table verified.
    pub fn ok(&self) -> bool {
        self.tables.iter().all(|t| t.verified)
    }
}

/// Imports one PostgreSQL schema into a new SQLite database.
pub async fn import(
    url: &str,
    out: &Path,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    if out.exists() {
        return Err(ImportError::OutputExists { path: out.into() });
    }
    let notices = NoticeLog::default();
    let client =
        connect_collecting(url, &notices)
            .await
            .map_err(|source| ImportError::Connect {
                url: redact(url),
                source,
            })?;
    let schema = opts.schema.clone();
    let (mut tables, warnings, orm) = read_catalog(&client, &schema).await?;
    if tables.is_empty() {
        return Err(ImportError::NoTables {
            schema,
            url: redact(url),
        });
    }
    if !opts.tables.is_everything() {
        select_tables(&mut tables, &schema, &opts.tables)?;
    }
    // Numeric columns holding more digits than a double keeps: SQLite's
    // NUMERIC affinity would round them, so they are declared TEXT.
    let mut warnings = warnings;
    for t in tables.iter_mut() {
        for c in t.columns.iter_mut() {
            if matches!(c.read_as, PgType::Numeric(_)) {
                let sql = format!(
                    "SELECT count(*) FROM {} WHERE {q} IS NOT NULL AND {q} <> {q}::float8::numeric",
                    qualified(&schema, &t.name),
                    q = quote(&c.name)
                );
                let n: i64 = client
                    .query_one(&sql, &[])
                    .await
                    .map_err(pg(format!("checking {}.{}", t.name, c.name)))?
                    .get(0);
                if n > 0 {
                    c.sqlite_type = "TEXT".into();
                    warnings.push(format!(
                        "{}.{}: {n} value(s) have more digits than SQLite's NUMERIC keeps; column declared TEXT to keep every digit",
                        quote(&t.name),
                        quote(&c.name)
                    ));
                }
            }
        }
    }
    tracing::debug!("catalog read in {} ms", started.elapsed().as_millis());
    let tmp = out.with_extension("import-tmp");
    let _ = std::fs::remove_file(&tmp);
    let handle = tokio::runtime::Handle::current();
    let out_path = out.to_path_buf();
    let progress = opts.progress.clone();
    let mut report = crate::task::blocking(move || {
        write_sqlite(&handle, &client, &schema, &tables, &tmp, progress).and_then(|mut r| {
            std::fs::rename(&tmp, &out_path).map_err(|source| ImportError::Io {
                path: out_path.clone(),
                source,
            })?;
            r.warnings.splice(0..0, warnings);
            Ok(r)
        })
    })
    .await??;
    report.orm = orm.to_string();
    report.notices = notices.summary();
    report.millis = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Keeps the selected tables. A selected table with a foreign key into a
/// table left out is an error (the import creates every key; see
/// [`crate::pg::select`]).
fn select_tables(
    tables: &mut Vec<ImportTable>,
    schema: &str,
    selection: &TableSelection,
) -> Result<(), ImportError> {
    let from = Source {
        fold_case: false,
        schema: Some(schema),
        where_: format!(" in schema {schema:?}"),
        how_to_list: format!("List them with: psql URL -c '\\dt {}.*'", quote(schema)),
    };
    let all: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let chosen = selection.choose(&all, &from)?;
    let keys = tables.iter().flat_map(|t| {
        t.foreign_keys
            .iter()
            .map(move |k| (t.name.as_str(), k.parent.as_str()))
    });
    check_foreign_keys(keys, &all, &chosen, false)?;
    let chosen: std::collections::BTreeSet<String> = chosen.iter().map(|s| s.to_string()).collect();
    tables.retain(|t| chosen.contains(&t.name));
    Ok(())
}
