//! `export`: SQLite -> PostgreSQL. Plan (schema + value statistics + type
//! mapping), create tables, load each over binary COPY (`jobs` tables at
//! once, one connection each), add keys, checks and indexes, reset
//! sequences, read every table back to compare row counts and checksums,
//! then add foreign keys and views.

use crate::redact::redact_url as redact;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio_postgres::Client;

use super::checksum::TableChecksum;
use super::copy::{self, CopyFormatError, TupleReader};
use super::ddl::{self, Problem, SourceSchema, Stmt, TablePlan};
use super::ident::{literal, qualified, quote};
use super::source;
use super::types::{ColumnMapping, ColumnStats, EpochUnit, PgType, map_column};
use super::value::{self, Conversion};
use crate::task::lock_or_recover;

/// Errors of an export. Each names what was at fault and what to do.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no SQLite database at {path}: check the path")]
    NoDatabase { path: PathBuf },
    #[error("cannot read the SQLite database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("PostgreSQL error while {doing}: {source}")]
    Postgres {
        doing: String,
        source: tokio_postgres::Error,
    },
    #[error(
        "bad value in table {table:?}, {rowid}, column {column:?}: {reason}: {value}. \
         Fix the row, set the column's type with --type {table}.{column}=TYPE, \
         or skip such rows with --on-bad-row report=FILE (tables created so far stay: \
         rerun with --drop)"
    )]
    BadValue {
        table: String,
        /// `rowid 12`, or the primary key of a WITHOUT ROWID table.
        rowid: String,
        column: String,
        value: String,
        reason: String,
    },
    #[error(
        "table {table:?} already exists in PostgreSQL and holds rows; \
         use --drop to replace it or --truncate to empty it first"
    )]
    TableNotEmpty { table: String },
    #[error(
        "table {table:?} does not exist in PostgreSQL; --data-only loads into an existing \
         schema: create it first (run your migrations) or export without --data-only"
    )]
    MissingTable { table: String },
    #[error(
        "column {column:?} of table {table:?} does not exist in PostgreSQL{hint}; add it, or drop it \
         from the SQLite table before a --data-only export"
    )]
    MissingColumn {
        table: String,
        column: String,
        /// e.g. ` (it has "createdat": names differ in case)`.
        hint: String,
    },
    #[error(
        "PostgreSQL column {table}.{column} is NOT NULL without a default and the SQLite table \
         has no such column"
    )]
    RequiredColumn { table: String, column: String },
    #[error(
        "PostgreSQL column {table}.{column} has type {pg_type}, which litevault cannot write; \
         supported: boolean, smallint, integer, bigint, real, double precision, numeric, text, \
         varchar, bytea, date, time, timestamp, timestamptz, json, jsonb, uuid"
    )]
    UnsupportedType {
        table: String,
        column: String,
        pg_type: String,
    },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: ConnectError },
    #[error("--type {key}: {reason}")]
    BadOverride { key: String, reason: String },
    #[error("cannot write the bad-row report {path}: {source}")]
    Report {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading back table {table:?}: {source}")]
    CopyFormat {
        table: String,
        source: CopyFormatError,
    },
    #[error("export worker failed: {0}")]
    Worker(String),
}

fn pg(doing: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ExportError {
    let doing = doing.into();
    move |source| ExportError::Postgres { doing, source }
}

/// Whether the export creates the schema or loads into an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportMode {
    /// Create tables, constraints, indexes, sequences, views.
    Full,
    /// Load into existing tables (matched by column name); no DDL.
    DataOnly,
}

/// What to do with a table that already exists in PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfExists {
    /// Load into it only if it is empty.
    Refuse,
    /// `DROP TABLE ... CASCADE` and create it again.
    Drop,
    /// `TRUNCATE ... CASCADE` and load into it.
    Truncate,
}

/// What to do with a value PostgreSQL cannot hold as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnBadRow {
    /// Stop, naming table, row, column and value.
    Stop,
    /// Skip the row, write it as a JSON line to the file, count it.
    Report(PathBuf),
}

/// Export settings.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub mode: ExportMode,
    pub if_exists: IfExists,
    /// Tables loaded at once, one connection each.
    pub jobs: usize,
    pub on_bad_row: OnBadRow,
    /// Column types set by the user: (table, column) -> type.
    pub types: BTreeMap<(String, String), PgType>,
    /// Target PostgreSQL schema.
    pub schema: String,
    /// Where to report the rows copied (nowhere by default).
    pub progress: crate::progress::ProgressSink,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            mode: ExportMode::Full,
            if_exists: IfExists::Refuse,
            jobs: 2,
            on_bad_row: OnBadRow::Stop,
            types: BTreeMap::new(),
            schema: "public".into(),
            progress: crate::progress::ProgressSink::none(),
        }
    }
}

/// Parses `table.column=TYPE` (the column is after the last dot).
pub fn parse_type_override(s: &str) -> Result<((String, String), PgType), ExportError> {
    let bad = |reason: &str| ExportError::BadOverride {
        key: s.to_string(),
        reason: reason.to_string(),
    };
    let (key, ty) = s
        .split_once('=')
        .ok_or_else(|| bad("write table.column=TYPE, e.g. users.created=timestamptz"))?;
    let (t, c) = key
        .trim()
        .rsplit_once('.')
        .ok_or_else(|| bad("write table.column=TYPE, e.g. users.created=timestamptz"))?;
    let ty = PgType::parse(ty).ok_or_else(|| {
        bad("unknown type; use one of boolean, smallint, integer, bigint, real, double precision, numeric(p,s), text, varchar(n), bytea, date, time, timestamp, timestamptz, json, jsonb, uuid")
    })?;
    Ok(((t.trim().to_string(), c.trim().to_string()), ty))
}

/// Reads a types file: one `table.column = TYPE` per line, `#` comments.
pub fn read_types_file(path: &Path) -> Result<BTreeMap<(String, String), PgType>, ExportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ExportError::BadOverride {
        key: path.display().to_string(),
        reason: format!("cannot read the file: {e}"),
    })?;
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (k, t) = parse_type_override(line).map_err(|e| ExportError::BadOverride {
            key: format!("{}:{}", path.display(), n + 1),
            reason: e.to_string(),
        })?;
        out.insert(k, t);
    }
    Ok(out)
}

/// What the export will do: the schema read from SQLite and every table's
/// column types.
#[derive(Clone, Debug)]
pub struct ExportPlan {
    pub source: SourceSchema,
    pub tables: Vec<TablePlan>,
}

fn open_ro(path: &Path) -> Result<rusqlite::Connection, ExportError> {
    let c = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| ExportError::Sqlite {
        path: path.into(),
        source,
    })?;
    let _ = c.busy_timeout(std::time::Duration::from_secs(30));
    Ok(c)
}

/// Reads the schema and the values' statistics and maps every column.
pub fn plan(path: &Path, opts: &ExportOptions) -> Result<ExportPlan, ExportError> {
    let sq = |source| ExportError::Sqlite {
        path: path.into(),
        source,
    };
    if !path.is_file() {
        return Err(ExportError::NoDatabase { path: path.into() });
    }
    let conn = open_ro(path)?;
    conn.execute_batch("BEGIN").map_err(sq)?;
    let source = source::read_schema(&conn).map_err(sq)?;
    for (t, c) in opts.types.keys() {
        let ok = source
            .tables
            .iter()
            .any(|x| &x.name == t && x.columns.iter().any(|y| &y.name == c));
        if !ok {
            return Err(ExportError::BadOverride {
                key: format!("{t}.{c}"),
                reason: "no such table and column in the SQLite database".into(),
            });
        }
    }
    conn.execute_batch("COMMIT").map_err(sq)?;
    drop(conn);
    // One statistics scan per table, `jobs` tables at once.
    let kinds: Vec<Vec<Option<source::StatsKind>>> = source
        .tables
        .iter()
        .map(|t| {
            t.columns
                .iter()
                .map(|c| {
                    let over = opts.types.get(&(t.name.clone(), c.name.clone()));
                    match over {
                        Some(ty) if ty.is_temporal() => Some(source::StatsKind::Temporal),
                        Some(_) => None,
                        None => source::stats_kind(c, source.orm),
                    }
                })
                .collect()
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    // Each slot is written whole under the lock: still valid after a panic
    // elsewhere (the scope reports that panic itself).
    let results: Mutex<Vec<Option<rusqlite::Result<Vec<ColumnStats>>>>> =
        Mutex::new((0..source.tables.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1).min(source.tables.len().max(1)) {
            scope.spawn(|| {
                let Ok(conn) = open_ro(path) else { return };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = source.tables.get(i) else { break };
                    let r = source::column_stats(&conn, &t.name, &t.columns, &kinds[i]);
                    // Cannot fail: `i` indexes `source.tables`, which
                    // `results` has one slot for each of.
                    lock_or_recover(&results)[i] = Some(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(PoisonError::into_inner);
    let mut tables = vec![];
    for (t, r) in source.tables.iter().zip(results) {
        let stats = match r {
            Some(r) => r.map_err(sq)?,
            None => {
                return Err(ExportError::Worker(format!(
                    "no statistics for table {:?}",
                    t.name
                )));
            }
        };
        let columns = t
            .columns
            .iter()
            .zip(&stats)
            .map(|(c, s)| {
                map_column(
                    c,
                    s,
                    source.orm,
                    opts.types.get(&(t.name.clone(), c.name.clone())),
                )
            })
            .collect();
        tables.push(TablePlan {
            table: t.clone(),
            columns,
        });
    }
    ddl::parents_first(&mut tables);
    Ok(ExportPlan { source, tables })
}

/// The DDL the export would run (`--schema-only`).
pub fn schema_script(plan: &ExportPlan, schema: &str) -> String {
    ddl::script(schema, &plan.tables, &plan.source)
}

/// One table's result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TableReport {
    pub table: String,
    /// Rows read from SQLite.
    pub source_rows: u64,
    /// Rows skipped with `--on-bad-row report=...`.
    pub rejected: u64,
    /// Count and checksum of the rows sent (source side).
    pub sqlite: TableChecksum,
    /// Count and checksum read back from PostgreSQL.
    pub postgres: TableChecksum,
    /// Both sides agree.
    pub verified: bool,
    /// Created by this export (vs loaded into an existing table).
    pub created: bool,
}

/// What an export did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ExportReport {
    pub orm: String,
    pub tables: Vec<TableReport>,
    /// Type decisions and other notes.
    pub notes: Vec<String>,
    /// Schema objects not carried over (untranslatable, or rejected by PostgreSQL).
    pub problems: Vec<Problem>,
    /// Constraints and indexes PostgreSQL refused (a subset of `problems`):
    /// the export exits non-zero when there are any.
    pub failed_constraints: usize,
    pub rejected_rows: u64,
    pub millis: u64,
}

impl ExportReport {
    /// Every table verified and no constraint refused.
    pub fn ok(&self) -> bool {
        self.tables.iter().all(|t| t.verified) && self.failed_constraints == 0
    }
}

/// Why a connection could not be made.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Tls(#[from] super::tls::TlsSetupError),
    #[error("{}", pg_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

/// Connects (TLS per `sslmode`, see [`super::tls`]), spawning the
/// connection's driver.
pub async fn connect(url: &str) -> Result<Client, ConnectError> {
    let (conn_str, tls) = super::tls::prepare(url)?;
    let (client, conn) = tokio_postgres::connect(&conn_str, tls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

/// Types of an existing table's columns, by name.
async fn existing_columns(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String, bool, bool)>, ExportError> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') \
             FROM pg_attribute a WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 \
             AND NOT a.attisdropped ORDER BY a.attnum",
            &[&qualified(schema, table)],
        )
        .await
        .map_err(pg(format!("reading the columns of {table:?}")))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// Re-targets a plan at an existing table: its column types come from
/// PostgreSQL's catalog, checked before the first row.
async fn retarget(
    client: &Client,
    path: &Path,
    schema: &str,
    plan: &mut TablePlan,
) -> Result<(), ExportError> {
    let cols = existing_columns(client, schema, &plan.table.name).await?;
    let t = &plan.table.name;
    let mut temporal = vec![None; plan.table.columns.len()];
    for (k, (c, m)) in plan
        .table
        .columns
        .iter()
        .zip(plan.columns.iter_mut())
        .enumerate()
    {
        let Some((_, ty, _, _)) = cols.iter().find(|x| x.0 == c.name) else {
            let hint = cols
                .iter()
                .find(|x| x.0.eq_ignore_ascii_case(&c.name))
                .map(|x| format!(" (it has {:?}: names differ in case)", x.0))
                .unwrap_or_default();
            return Err(ExportError::MissingColumn {
                table: t.clone(),
                column: c.name.clone(),
                hint,
            });
        };
        let pg_type = PgType::parse(ty).ok_or_else(|| ExportError::UnsupportedType {
            table: t.clone(),
            column: c.name.clone(),
            pg_type: ty.clone(),
        })?;
        if pg_type.is_temporal() {
            temporal[k] = Some(source::StatsKind::Temporal);
        }
        *m = ColumnMapping {
            pg_type,
            epoch: m.epoch,
            identity: false,
            notes: vec![],
        };
    }
    // Integers going into an existing date/time column: their unit comes
    // from their magnitude, measured now (the plan did not know the target).
    if temporal.iter().any(|k| k.is_some()) {
        let (path, table, columns) = (path.to_path_buf(), t.clone(), plan.table.columns.clone());
        let stats = tokio::task::spawn_blocking(move || {
            let conn = open_ro(&path)?;
            source::column_stats(&conn, &table, &columns, &temporal).map_err(|source| {
                ExportError::Sqlite {
                    path: path.clone(),
                    source,
                }
            })
        })
        .await
        .map_err(|e| ExportError::Worker(e.to_string()))??;
        for (m, st) in plan.columns.iter_mut().zip(&stats) {
            if m.pg_type.is_temporal() {
                m.epoch = EpochUnit::from_max_abs(st.int_max_abs().max(st.real_max_abs as u64));
            }
        }
    }
    for (name, _, not_null, has_default) in &cols {
        if *not_null && !has_default && !plan.table.columns.iter().any(|c| &c.name == name) {
            return Err(ExportError::RequiredColumn {
                table: t.clone(),
                column: name.clone(),
            });
        }
    }
    Ok(())
}

/// Exports a SQLite database to PostgreSQL.
pub async fn export(
    path: &Path,
    url: &str,
    opts: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    let started = Instant::now();
    let path_owned = path.to_path_buf();
    let opts_c = opts.clone();
    let mut plan = tokio::task::spawn_blocking(move || plan(&path_owned, &opts_c))
        .await
        .map_err(|e| ExportError::Worker(e.to_string()))??;
    tracing::debug!("planned in {} ms", started.elapsed().as_millis());
    let client = connect(url).await.map_err(|source| ExportError::Connect {
        url: redact(url),
        source,
    })?;
    let schema = &opts.schema;
    let mut report = ExportReport {
        orm: plan.source.orm.to_string(),
        ..Default::default()
    };
    for p in &plan.tables {
        for (c, m) in p.table.columns.iter().zip(&p.columns) {
            for n in &m.notes {
                report
                    .notes
                    .push(format!("{}.{}: {n}", quote(&p.table.name), quote(&c.name)));
            }
        }
    }
    if opts.mode == ExportMode::Full {
        let has_schema = client
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[schema])
            .await
            .map_err(pg("looking up the schema"))?
            .is_some();
        if !has_schema {
            client
                .batch_execute(&format!("CREATE SCHEMA {}", quote(schema)))
                .await
                .map_err(pg(format!("creating schema {schema:?}")))?;
        }
        // Views name tables without a schema.
        client
            .batch_execute(&format!("SET search_path TO {}", quote(schema)))
            .await
            .map_err(pg("setting search_path"))?;
    }
    let existing: BTreeSet<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
            &[schema],
        )
        .await
        .map_err(pg("listing existing tables"))?
        .iter()
        .map(|r| r.get(0))
        .collect();

    // Decide, per table, create or load into the existing one; check
    // everything before the first row is written.
    let mut created = vec![false; plan.tables.len()];
    for (i, p) in plan.tables.iter_mut().enumerate() {
        let name = p.table.name.clone();
        let qt = qualified(schema, &name);
        let exists = existing.contains(&name);
        if opts.mode == ExportMode::DataOnly && !exists {
            return Err(ExportError::MissingTable { table: name });
        }
        if exists && opts.mode == ExportMode::Full && opts.if_exists == IfExists::Drop {
            continue;
        }
        if exists {
            if opts.if_exists != IfExists::Truncate {
                let n: i64 = client
                    .query_one(
                        &format!("SELECT count(*) FROM (SELECT 1 FROM {qt} LIMIT 1) x"),
                        &[],
                    )
                    .await
                    .map_err(pg(format!("counting rows of {name:?}")))?
                    .get(0);
                if n > 0 {
                    return Err(ExportError::TableNotEmpty { table: name });
                }
            }
            retarget(&client, path, schema, p).await?;
        } else {
            created[i] = true;
        }
    }
    // DDL: drop, truncate, create (one transaction).
    let mut ddl_sql = String::from("BEGIN;\n");
    for (i, p) in plan.tables.iter().enumerate() {
        let qt = qualified(schema, &p.table.name);
        let exists = existing.contains(&p.table.name);
        if exists && opts.mode == ExportMode::Full && opts.if_exists == IfExists::Drop {
            ddl_sql.push_str(&format!("DROP TABLE {qt} CASCADE;\n"));
            created[i] = true;
        } else if exists && opts.if_exists == IfExists::Truncate {
            ddl_sql.push_str(&format!("TRUNCATE {qt} CASCADE;\n"));
        }
        if created[i] {
            ddl_sql.push_str(&ddl::create_table(schema, p));
            ddl_sql.push_str(";\n");
        }
    }
    ddl_sql.push_str("COMMIT;");
    client
        .batch_execute(&ddl_sql)
        .await
        .map_err(pg("creating the tables"))?;
    let all = plan.tables.clone();
    for (i, p) in plan.tables.iter().enumerate() {
        if created[i] {
            for d in ddl::defaults(schema, p, &all) {
                run_or_report(&client, d, &mut report, false).await;
            }
        }
    }

    // Load, `jobs` tables at once, largest first.
    let bad_rows = match &opts.on_bad_row {
        OnBadRow::Stop => None,
        OnBadRow::Report(f) => Some(Arc::new(BadRowFile::create(f)?)),
    };
    let total_rows = if opts.progress.is_on() {
        let conn = open_ro(path)?;
        let mut n = 0u64;
        for p in &plan.tables {
            n += conn
                .query_row(
                    &format!("SELECT count(*) FROM {}", quote(&p.table.name)),
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or(0) as u64;
        }
        Some(n)
    } else {
        None
    };
    let bar = opts.progress.clone();
    bar.start(crate::progress::Unit::Rows, total_rows);
    let _finish = bar.finish_on_drop();
    let order: VecDeque<usize> = {
        let sizes = table_sizes(path, &plan.tables);
        let mut v: Vec<usize> = (0..plan.tables.len()).collect();
        v.sort_by_key(|&i| std::cmp::Reverse(sizes.get(i).copied().unwrap_or(0)));
        v.into()
    };
    // Tables still to load; a pop cannot be cut short, so the queue stays
    // valid after a worker's panic.
    let queue = Arc::new(Mutex::new(order));
    let plans = Arc::new(plan.tables.clone());
    let created = Arc::new(created);
    let cancel = Arc::new(AtomicBool::new(false));
    let mut workers = vec![];
    for _ in 0..opts.jobs.max(1).min(plan.tables.len().max(1)) {
        let (queue, plans, created, cancel) = (
            queue.clone(),
            plans.clone(),
            created.clone(),
            cancel.clone(),
        );
        let (url, schema, path) = (url.to_string(), schema.clone(), path.to_path_buf());
        let (bad_rows, bar) = (bad_rows.clone(), bar.clone());
        workers.push(tokio::spawn(async move {
            let client = connect(&url).await.map_err(|source| ExportError::Connect {
                url: redact(&url),
                source,
            })?;
            let mut done = vec![];
            loop {
                if cancel.load(Ordering::Relaxed) {
                    break;
                }
                let Some(i) = lock_or_recover(&queue).pop_front() else {
                    break;
                };
                let r = load_and_verify(
                    &client,
                    &path,
                    &schema,
                    &plans,
                    i,
                    created[i],
                    bad_rows.clone(),
                    bar.clone(),
                )
                .await;
                match r {
                    Ok(r) => done.push((i, r)),
                    Err(e) => {
                        cancel.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok::<_, ExportError>(done)
        }));
    }
    let mut results: Vec<(usize, TableOutcome)> = vec![];
    let mut first_err = None;
    for w in workers {
        match w.await {
            Ok(Ok(done)) => results.extend(done),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(ExportError::Worker(e.to_string()));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    results.sort_by_key(|(i, _)| *i);
    for (_, (t, problems, notes, failed)) in results {
        report.rejected_rows += t.rejected;
        report.tables.push(t);
        report.problems.extend(problems);
        report.notes.extend(notes);
        report.failed_constraints += failed;
    }
    if let Some(b) = &bad_rows {
        b.flush()?;
    }

    // Foreign keys once every table is loaded; then views and triggers.
    let t3 = Instant::now();
    if opts.mode == ExportMode::Full {
        for (i, p) in plan.tables.iter().enumerate() {
            if !created[i] {
                continue;
            }
            for fk in ddl::foreign_keys(schema, p, &all) {
                run_or_report(&client, fk, &mut report, true).await;
            }
        }
        for v in &plan.source.views {
            let st = ddl::view(schema, v, &all);
            run_or_report(&client, st, &mut report, false).await;
        }
        // After the load: COPY would have fired them.
        for t in &plan.source.triggers {
            let st = ddl::trigger(schema, t, &all);
            run_or_report(&client, st, &mut report, false).await;
        }
        for t in &plan.source.virtual_tables {
            report.problems.push(Problem {
                object: format!("virtual table {}", quote(&t.name)),
                sqlite_sql: t.sql.clone(),
                reason: "virtual tables (FTS, R*Tree...) have no PostgreSQL equivalent".into(),
            });
        }
    }
    tracing::debug!(
        "foreign keys, views, triggers in {} ms",
        t3.elapsed().as_millis()
    );
    report.millis = started.elapsed().as_millis() as u64;
    Ok(report)
}

fn table_sizes(path: &Path, plans: &[TablePlan]) -> Vec<u64> {
    let Ok(conn) = open_ro(path) else {
        return vec![];
    };
    plans
        .iter()
        .map(|p| {
            conn.query_row(
                "SELECT sum(pgsize) FROM dbstat WHERE name = ?1",
                [&p.table.name],
                |r| r.get::<_, Option<i64>>(0),
            )
            .ok()
            .flatten()
            .unwrap_or(0) as u64
        })
        .collect()
}

/// Runs a statement in its own transaction; a failure becomes a problem in
/// the report (with the PostgreSQL error), never a silent drop.
async fn run_or_report(
    client: &Client,
    st: Result<Stmt, Problem>,
    report: &mut ExportReport,
    constraint: bool,
) {
    match st {
        Ok(st) => {
            if let Err(e) = client.batch_execute(&st.sql).await {
                if constraint {
                    report.failed_constraints += 1;
                }
                report.problems.push(Problem {
                    object: st.what,
                    sqlite_sql: st.sql,
                    reason: format!("PostgreSQL refused it: {}", pg_message(&e)),
                });
            }
        }
        Err(p) => report.problems.push(p),
    }
}

/// The server's message of an error, or the error itself.
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => match d.detail() {
            Some(detail) => format!("{} ({detail})", d.message()),
            None => d.message().to_string(),
        },
        None => e.to_string(),
    }
}

/// Bad rows skipped, one JSON object a line.
struct BadRowFile {
    path: PathBuf,
    /// A panic while writing leaves at most a partial line, as a write
    /// error would: the file stays usable for the next rows.
    out: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl BadRowFile {
    fn create(path: &Path) -> Result<BadRowFile, ExportError> {
        let f = std::fs::File::create(path).map_err(|source| ExportError::Report {
            path: path.into(),
            source,
        })?;
        Ok(BadRowFile {
            path: path.into(),
            out: Mutex::new(std::io::BufWriter::new(f)),
        })
    }

    fn write(&self, line: &serde_json::Value) -> Result<(), ExportError> {
        let mut o = lock_or_recover(&self.out);
        serde_json::to_writer(&mut *o, line)
            .map_err(std::io::Error::from)
            .and_then(|_| o.write_all(b"\n"))
            .map_err(|source| ExportError::Report {
                path: self.path.clone(),
                source,
            })
    }

    fn flush(&self) -> Result<(), ExportError> {
        lock_or_recover(&self.out)
            .flush()
            .map_err(|source| ExportError::Report {
                path: self.path.clone(),
                source,
            })
    }
}

const CHUNK: usize = 1 << 20;

/// A loaded table: its report, problems, notes, constraints refused.
type TableOutcome = (TableReport, Vec<Problem>, Vec<String>, usize);

struct ReadOutcome {
    sum: TableChecksum,
    source_rows: u64,
    rejected: u64,
}

/// Reads a table and encodes it as binary COPY chunks (blocking).
fn read_table(
    path: &Path,
    plan: &TablePlan,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    bad_rows: Option<&BadRowFile>,
    bar: &crate::progress::ProgressSink,
) -> Result<Option<ReadOutcome>, ExportError> {
    let sq = |source| ExportError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_ro(path)?;
    let t = &plan.table;
    let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
    let (id_cols, id_names): (Vec<String>, Vec<String>) = if t.without_rowid {
        (
            t.primary_key.iter().map(|c| quote(c)).collect(),
            t.primary_key.clone(),
        )
    } else {
        (vec!["rowid".into()], vec!["rowid".into()])
    };
    let sql = format!(
        "SELECT {}, {} FROM {}",
        id_cols.join(", "),
        cols.join(", "),
        quote(&t.name)
    );
    let mut stmt = conn.prepare(&sql).map_err(sq)?;
    let mut rows = stmt.query([]).map_err(sq)?;
    let convs: Vec<Conversion> = plan
        .columns
        .iter()
        .map(|m| Conversion {
            pg_type: m.pg_type.clone(),
            epoch: m.epoch,
        })
        .collect();
    let types = plan.types();
    let nid = id_cols.len();
    let mut buf = BytesMut::with_capacity(CHUNK + (64 << 10));
    copy::put_header(&mut buf);
    let mut out = ReadOutcome {
        sum: TableChecksum::default(),
        source_rows: 0,
        rejected: 0,
    };
    let mut since_tick = 0u64;
    while let Some(row) = rows.next().map_err(sq)? {
        out.source_rows += 1;
        let start = buf.len();
        copy::put_tuple_start(&mut buf, convs.len());
        let mut failed = None;
        for (i, conv) in convs.iter().enumerate() {
            let v = row.get_ref(nid + i).map_err(sq)?;
            if let Err(e) = value::encode_field(&mut buf, conv, v) {
                failed = Some((i, e));
                break;
            }
        }
        if let Some((i, e)) = failed {
            buf.truncate(start);
            let ids: Vec<String> = (0..nid)
                .map(|k| row.get_ref(k).map(value::show).unwrap_or_default())
                .collect();
            let rowid = id_names
                .iter()
                .zip(&ids)
                .map(|(n, v)| format!("{n} {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let column = t.columns[i].name.clone();
            match bad_rows {
                None => {
                    return Err(ExportError::BadValue {
                        table: t.name.clone(),
                        rowid,
                        column,
                        value: e.value,
                        reason: e.reason,
                    });
                }
                Some(f) => {
                    f.write(&serde_json::json!({
                        "table": t.name, "row": rowid, "column": column,
                        "value": e.value, "reason": e.reason,
                    }))?;
                    out.rejected += 1;
                    continue;
                }
            }
        }
        out.sum.add_tuple(&types, &buf[start + 2..]);
        since_tick += 1;
        if buf.len() >= CHUNK {
            bar.advance(since_tick);
            since_tick = 0;
            if tx.blocking_send(buf.split().freeze()).is_err() {
                return Ok(None); // the COPY failed; its error is reported
            }
        }
    }
    copy::put_trailer(&mut buf);
    bar.advance(since_tick);
    if tx.blocking_send(buf.freeze()).is_err() {
        return Ok(None);
    }
    Ok(Some(out))
}

/// Streams one table into `COPY ... FROM STDIN (FORMAT binary)`.
#[allow(clippy::too_many_arguments)]
async fn copy_into(
    client: &Client,
    path: &Path,
    plans: &Arc<Vec<TablePlan>>,
    i: usize,
    qt: &str,
    cols: &[String],
    bad_rows: Option<Arc<BadRowFile>>,
    bar: crate::progress::ProgressSink,
) -> Result<ReadOutcome, ExportError> {
    let name = &plans[i].table.name;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let reader = {
        let (path, plans) = (path.to_path_buf(), plans.clone());
        tokio::task::spawn_blocking(move || {
            read_table(&path, &plans[i], tx, bad_rows.as_deref(), &bar)
        })
    };
    let copy_sql = format!("COPY {qt} ({}) FROM STDIN (FORMAT binary)", cols.join(", "));
    let sink = client
        .copy_in::<_, Bytes>(&copy_sql)
        .await
        .map_err(pg(format!("starting COPY into {name:?}")))?;
    futures::pin_mut!(sink);
    let mut send_err = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = sink.send(chunk).await {
            send_err = Some(e);
            break;
        }
    }
    drop(rx);
    let read = reader
        .await
        .map_err(|e| ExportError::Worker(e.to_string()))??;
    if let Some(e) = send_err {
        return Err(pg(format!("loading {name:?}"))(e));
    }
    let Some(read) = read else {
        return Err(ExportError::Worker(format!(
            "the reader of {name:?} stopped"
        )));
    };
    sink.as_mut()
        .finish()
        .await
        .map_err(pg(format!("finishing COPY into {name:?}")))?;

    Ok(read)
}

#[allow(clippy::too_many_arguments)]
async fn load_and_verify(
    client: &Client,
    path: &Path,
    schema: &str,
    plans: &Arc<Vec<TablePlan>>,
    i: usize,
    created: bool,
    bad_rows: Option<Arc<BadRowFile>>,
    bar: crate::progress::ProgressSink,
) -> Result<TableOutcome, ExportError> {
    let plan = &plans[i];
    let name = plan.table.name.clone();
    let t0 = Instant::now();
    let qt = qualified(schema, &name);
    let cols: Vec<String> = plan.table.columns.iter().map(|c| quote(&c.name)).collect();
    bar.message(&name);
    // An existing table's own triggers would fire on every copied row; the
    // SQLite rows already hold their effects.
    let (mut problems, mut notes, mut failed) = (vec![], vec![], 0usize);
    let mut triggers_disabled = false;
    if !created {
        let has_triggers: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::text::regclass AND NOT tgisinternal)",
                &[&qt],
            )
            .await
            .map_err(pg(format!("looking for triggers on {name:?}")))?
            .get(0);
        if has_triggers {
            match client
                .batch_execute(&format!("ALTER TABLE {qt} DISABLE TRIGGER USER"))
                .await
            {
                Ok(()) => {
                    triggers_disabled = true;
                    notes.push(format!(
                        "{}: its triggers were disabled during the load",
                        quote(&name)
                    ));
                }
                Err(e) => notes.push(format!(
                    "{}: its triggers fired during the load (cannot disable them: {})",
                    quote(&name),
                    pg_message(&e)
                )),
            }
        }
    }
    let copied = copy_into(client, path, plans, i, &qt, &cols, bad_rows, bar).await;
    if triggers_disabled {
        client
            .batch_execute(&format!("ALTER TABLE {qt} ENABLE TRIGGER USER"))
            .await
            .map_err(pg(format!("enabling the triggers of {name:?} again")))?;
    }
    let read = copied?;

    tracing::debug!("{name}: loaded in {} ms", t0.elapsed().as_millis());
    let t1 = Instant::now();
    // Keys, checks, indexes; sequence.
    if created {
        let (stmts, pr, nt) = ddl::after_load(schema, plan, plans);
        problems.extend(pr);
        notes.extend(nt);
        for st in stmts {
            if let Err(e) = client.batch_execute(&st.sql).await {
                failed += 1;
                problems.push(Problem {
                    object: st.what,
                    sqlite_sql: st.sql,
                    reason: format!("PostgreSQL refused it: {}", pg_message(&e)),
                });
            }
        }
        if let Some(st) = ddl::sequence_reset(schema, plan) {
            client
                .batch_execute(&st.sql)
                .await
                .map_err(pg(format!("resetting {}", st.what)))?;
        }
    } else {
        reset_existing_sequences(client, schema, &name).await?;
    }

    tracing::debug!(
        "{name}: keys and indexes in {} ms",
        t1.elapsed().as_millis()
    );
    let t2 = Instant::now();
    // Read back and compare.
    let types = plan.types();
    let out_sql = format!(
        "COPY (SELECT {} FROM {qt}) TO STDOUT (FORMAT binary)",
        cols.join(", ")
    );
    let postgres = read_back(client, &out_sql, &types, &name).await?;
    let verified = postgres == read.sum;
    tracing::debug!("{name}: read back in {} ms", t2.elapsed().as_millis());
    Ok((
        TableReport {
            table: name,
            source_rows: read.source_rows,
            rejected: read.rejected,
            sqlite: read.sum,
            postgres,
            verified,
            created,
        },
        problems,
        notes,
        failed,
    ))
}

/// Streams `COPY (...) TO STDOUT (FORMAT binary)` into a checksum.
pub async fn read_back(
    client: &Client,
    sql: &str,
    types: &[PgType],
    table: &str,
) -> Result<TableChecksum, ExportError> {
    let stream = client
        .copy_out(sql)
        .await
        .map_err(pg(format!("reading back {table:?}")))?;
    futures::pin_mut!(stream);
    let mut reader = TupleReader::new(types.len());
    let mut sum = TableChecksum::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(pg(format!("reading back {table:?}")))?;
        reader.push(&chunk);
        reader
            .drain(|t| sum.add_tuple(types, t))
            .map_err(|source| ExportError::CopyFormat {
                table: table.into(),
                source,
            })?;
    }
    reader.finish().map_err(|source| ExportError::CopyFormat {
        table: table.into(),
        source,
    })?;
    Ok(sum)
}

/// Serial and identity columns of an existing table continue after max.
async fn reset_existing_sequences(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<(), ExportError> {
    let qt = qualified(schema, table);
    let rows = client
        .query(
            "SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = $1::text::regclass \
             AND a.attnum > 0 AND NOT a.attisdropped \
             AND pg_get_serial_sequence($1, a.attname) IS NOT NULL",
            &[&qt],
        )
        .await
        .map_err(pg(format!("finding the sequences of {table:?}")))?;
    for r in rows {
        let col: String = r.get(0);
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence({}, {}), COALESCE((SELECT max({}) FROM {qt}), 0) + 1, false)",
            literal(&qt),
            literal(&col),
            quote(&col)
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(pg(format!("resetting the sequence of {table}.{col}")))?;
    }
    Ok(())
}
