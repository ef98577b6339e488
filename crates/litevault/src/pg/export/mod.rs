//! `export`: SQLite -> PostgreSQL. Plan (schema + value statistics + type
//! mapping), create tables, load each over binary COPY (`jobs` tables at
//! once, one connection each), add keys, checks and indexes, reset
//! sequences, read every table back to compare row counts and checksums,
//! then add foreign keys and views.
//!
//! This file holds the settings, the errors, the report and [`export`]
//! itself; `plan` decides what to create, `load` streams one table over
//! COPY (bad rows, triggers, keys and indexes after the load) and `verify`
//! reads a table back into its checksum; `connect` opens the connections.

mod connect;
mod load;
mod order;
mod plan;
mod verify;

pub use connect::{ConnectError, connect, pg_message};
pub use plan::{ExportPlan, plan, schema_script};
pub use verify::read_back;

use crate::redact::redact_url as redact;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_postgres::Client;

use super::checksum::TableChecksum;
use super::copy::CopyFormatError;
use super::ddl::{self, Problem, Stmt};
use super::ident::{qualified, quote};
use super::notice::{NoticeLog, NoticeSummary, connect_collecting};
use super::select::{SelectionError, TableSelection};
use super::types::PgType;
use crate::task::lock_or_recover;
use load::{BadRowFile, TableOutcome, load_and_verify, table_sizes};
use plan::{migrations_differ, refuse_truncating_unselected, retarget};

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
         or skip such rows with --on-bad-row report=FILE (tables loaded so far stay: \
         rerun with --truncate, or --drop for the tables the export creates)"
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
         varchar, bytea, date, time, timestamp, timestamptz, json, jsonb, uuid, interval, inet, \
         cidr, macaddr, macaddr8, enums, citext, tsvector (loaded empty) and arrays of these; \
         leave the table out with --exclude-table"
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
    #[error(transparent)]
    Selection(#[from] SelectionError),
    #[error(
        "--truncate would also empty {child} (its foreign key refers to {parent:?}, and \
         TRUNCATE ... CASCADE follows it), which --table/--exclude-table leave out; \
         include it, or drop that foreign key first"
    )]
    TruncateCascades { parent: String, child: String },
    #[error(
        "tables {tables:?} refer to each other, and foreign key {constraint:?} of {child:?} is \
         not DEFERRABLE: they must load in one transaction with their keys checked at its \
         commit. Make it DEFERRABLE (ALTER TABLE ... ALTER CONSTRAINT ... DEFERRABLE), or \
         drop it for the load and add it again after"
    )]
    ForeignKeyCycle {
        tables: Vec<String>,
        child: String,
        constraint: String,
    },
    #[error("export worker failed: {0}")]
    Worker(String),
}

impl From<crate::task::TaskFailed> for ExportError {
    fn from(e: crate::task::TaskFailed) -> Self {
        ExportError::Worker(e.to_string())
    }
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
    /// The tables to export (every table by default); see [`crate::pg::select`].
    pub tables: TableSelection,
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
            tables: TableSelection::default(),
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
        bad("unknown type; use one of boolean, smallint, integer, bigint, real, double precision, numeric(p,s), text, varchar(n), bytea, date, time, timestamp, timestamptz, json, jsonb, uuid, interval, inet, cidr, macaddr, macaddr8, or an array of one (integer[])")
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
    /// PostgreSQL's notices, one entry per kind.
    pub notices: Vec<NoticeSummary>,
    pub millis: u64,
}

impl ExportReport {
    /// Every table verified and no constraint refused.
    pub fn ok(&self) -> bool {
        self.tables.iter().all(|t| t.verified) && self.failed_constraints == 0
    }
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
    let mut plan = crate::task::blocking(move || plan(&path_owned, &opts_c)).await??;
    tracing::debug!("planned in {} ms", started.elapsed().as_millis());
    let notices = NoticeLog::default();
    let client =
        connect_collecting(url, &notices)
            .await
            .map_err(|source| ExportError::Connect {
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
    let orm = plan.source.orm;
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
            report
                .notes
                .extend(retarget(&client, path, schema, orm, p).await?);
        } else {
            created[i] = true;
        }
    }
    // Read before any TRUNCATE empties PostgreSQL's copy of the table.
    if plan
        .tables
        .iter()
        .enumerate()
        .any(|(i, p)| !created[i] && Some(p.table.name.as_str()) == orm.bookkeeping_table())
        && let Some(note) = migrations_differ(&client, path, schema, orm).await?
    {
        report.notes.push(note);
    }
    if !opts.tables.is_everything() && opts.if_exists == IfExists::Truncate {
        let truncated: Vec<String> = plan
            .tables
            .iter()
            .map(|p| p.table.name.clone())
            .filter(|n| existing.contains(n))
            .collect();
        refuse_truncating_unselected(&client, schema, &truncated).await?;
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
    // Units of tables that load together, each after the tables its
    // existing foreign keys refer to; largest first among the ready ones.
    let units = load_order(&client, schema, &plan.tables, &created).await?;
    let pending: Vec<usize> = {
        let sizes = table_sizes(path, &plan.tables);
        let size =
            |u: &Vec<usize>| -> u64 { u.iter().map(|&i| sizes.get(i).copied().unwrap_or(0)).sum() };
        let mut v: Vec<usize> = (0..units.units.len()).collect();
        v.sort_by_key(|&u| std::cmp::Reverse(size(&units.units[u])));
        v
    };
    // Written whole under the lock (a pop, a flag): valid after a panic.
    let schedule = Arc::new(Mutex::new(Schedule {
        done: vec![false; units.units.len()],
        pending,
    }));
    let units = Arc::new(units);
    let wake = Arc::new(tokio::sync::Notify::new());
    let plans = Arc::new(plan.tables.clone());
    let created = Arc::new(created);
    let cancel = Arc::new(AtomicBool::new(false));
    let mut workers = vec![];
    for _ in 0..opts.jobs.max(1).min(plan.tables.len().max(1)) {
        let (schedule, units, wake, plans, created, cancel) = (
            schedule.clone(),
            units.clone(),
            wake.clone(),
            plans.clone(),
            created.clone(),
            cancel.clone(),
        );
        let (url, schema, path) = (url.to_string(), schema.clone(), path.to_path_buf());
        let (bad_rows, bar, notices) = (bad_rows.clone(), bar.clone(), notices.clone());
        workers.push(tokio::spawn(async move {
            let _end = WorkerEnd {
                cancel: cancel.clone(),
                wake: wake.clone(),
            };
            let client = connect_collecting(&url, &notices).await.map_err(|source| {
                ExportError::Connect {
                    url: redact(&url),
                    source,
                }
            })?;
            let mut done = vec![];
            loop {
                if cancel.load(Ordering::Relaxed) {
                    break;
                }
                // Registered before looking, so a unit finishing in between still wakes us.
                let woken = wake.notified();
                let picked = {
                    let mut s = lock_or_recover(&schedule);
                    if s.pending.is_empty() {
                        break;
                    }
                    let ready = s
                        .pending
                        .iter()
                        .position(|&u| units.waits_for[u].iter().all(|&w| s.done[w]));
                    ready.map(|k| s.pending.remove(k))
                };
                let Some(u) = picked else {
                    woken.await;
                    continue;
                };
                let tables = &units.units[u];
                let r = async {
                    // Loads into existing tables run in a transaction: a
                    // deferred key fails at its COMMIT, reported here, and a
                    // failure leaves the table (and its triggers) as it was.
                    let transaction = tables.iter().all(|&i| !created[i]);
                    if transaction {
                        let begin = if tables.len() > 1 {
                            "BEGIN; SET CONSTRAINTS ALL DEFERRED"
                        } else {
                            "BEGIN"
                        };
                        client
                            .batch_execute(begin)
                            .await
                            .map_err(pg("starting the load's transaction"))?;
                    }
                    let mut out = vec![];
                    for &i in tables {
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
                        .await?;
                        out.push((i, r));
                    }
                    if transaction {
                        let names: Vec<&str> = tables
                            .iter()
                            .map(|&i| plans[i].table.name.as_str())
                            .collect();
                        client.batch_execute("COMMIT").await.map_err(pg(format!(
                            "committing the load of {} (deferred foreign keys are checked now)",
                            names.join(", ")
                        )))?;
                    }
                    Ok::<_, ExportError>(out)
                }
                .await;
                match r {
                    Ok(r) => {
                        done.extend(r);
                        lock_or_recover(&schedule).done[u] = true;
                        wake.notify_waiters();
                    }
                    Err(e) => {
                        cancel.store(true, Ordering::Relaxed);
                        wake.notify_waiters();
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
        // Django's LIKE indexes, as its migrations make them on PostgreSQL.
        if plan.source.orm == super::types::Orm::Django {
            for (i, p) in plan.tables.iter().enumerate() {
                if created[i] {
                    for st in ddl::pattern_ops_indexes(schema, p) {
                        run_or_report(&client, Ok(st), &mut report, true).await;
                    }
                }
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
    report.notices = notices.summary();
    report.millis = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Wakes the workers waiting for a unit when a worker ends, and stops them
/// when it ends by a panic (its unit will never be done).
struct WorkerEnd {
    cancel: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
}

impl Drop for WorkerEnd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.cancel.store(true, Ordering::Relaxed);
        }
        self.wake.notify_waiters();
    }
}

/// The units still to load and the ones loaded.
struct Schedule {
    pending: Vec<usize>,
    done: Vec<bool>,
}

/// The foreign keys PostgreSQL already has between the tables loaded into
/// (not the ones this export creates: those get their keys after the
/// load), grouped into [`order::LoadUnits`]. Tables that refer to each
/// other load in one transaction, which needs their keys DEFERRABLE.
async fn load_order(
    client: &Client,
    schema: &str,
    tables: &[ddl::TablePlan],
    created: &[bool],
) -> Result<order::LoadUnits, ExportError> {
    let index: BTreeMap<&str, usize> = tables
        .iter()
        .enumerate()
        .filter(|(i, _)| !created[*i])
        .map(|(i, t)| (t.table.name.as_str(), i))
        .collect();
    let mut edges = vec![];
    let mut not_deferrable = vec![];
    if !index.is_empty() {
        let rows = client
            .query(
                "SELECT cc.relname::text, pc.relname::text, k.condeferrable, k.conname::text \
                 FROM pg_constraint k \
                 JOIN pg_class cc ON cc.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace \
                 JOIN pg_class pc ON pc.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
                 WHERE k.contype = 'f' AND cn.nspname = $1 AND pn.nspname = $1",
                &[&schema],
            )
            .await
            .map_err(pg("reading the foreign keys of the tables to load"))?;
        for r in rows {
            let (child, parent, deferrable, name): (String, String, bool, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            if let (Some(&c), Some(&p)) = (index.get(child.as_str()), index.get(parent.as_str())) {
                edges.push((c, p));
                if !deferrable {
                    not_deferrable.push((c, p, name));
                }
            }
        }
    }
    let units = order::load_units(tables.len(), &edges);
    for u in &units.units {
        if u.len() < 2 {
            continue;
        }
        if let Some((c, _, name)) = not_deferrable
            .iter()
            .find(|(c, p, _)| c != p && u.contains(c) && u.contains(p))
        {
            return Err(ExportError::ForeignKeyCycle {
                tables: u.iter().map(|&i| tables[i].table.name.clone()).collect(),
                child: tables[*c].table.name.clone(),
                constraint: name.clone(),
            });
        }
    }
    Ok(units)
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
