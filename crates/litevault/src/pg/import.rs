//! `import`: PostgreSQL -> SQLite. Reads the catalog of one schema (tables,
//! columns, primary keys, unique constraints, foreign keys, checks, indexes,
//! defaults), creates the tables in a new SQLite file, streams every table
//! over binary COPY, verifies row counts and checksums on both sides, and
//! publishes the file in WAL mode (written to `<out>.tmp`, renamed at the end).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use rusqlite::types::Value;
use tokio_postgres::Client;

use super::checksum::{TableChecksum, TupleFields};
use super::copy::TupleReader;
use super::ddl::Problem;
use super::export::connect;
use super::ident::{qualified, quote};
use super::types::{EpochUnit, PgType};
use super::value::{self, Conversion, decode_to_sqlite};
use crate::redact::redact_url as redact;

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
    #[error("import worker failed: {0}")]
    Worker(String),
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
    /// Where to report the rows copied (nowhere by default).
    pub progress: crate::progress::ProgressSink,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            schema: "public".into(),
            progress: crate::progress::ProgressSink::none(),
        }
    }
}

/// How a PostgreSQL column is read and stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportColumn {
    pub name: String,
    /// `format_type()` of the column.
    pub pg_type_name: String,
    /// The type as litevault reads it (`Text` for columns read as text or JSON).
    pub read_as: PgType,
    /// The SELECT expression.
    pub select: String,
    /// The declared SQLite type.
    pub sqlite_type: String,
    pub not_null: bool,
    pub default: Option<String>,
    /// The column's default is a sequence (`serial`, identity).
    pub serial: bool,
}

/// A table read from PostgreSQL's catalog.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportTable {
    pub name: String,
    pub columns: Vec<ImportColumn>,
    pub primary_key: Vec<String>,
    pub uniques: Vec<Vec<String>>,
    pub foreign_keys: Vec<ImportForeignKey>,
    /// CHECK expressions as PostgreSQL prints them.
    pub checks: Vec<String>,
    /// (index name, pg_get_indexdef)
    pub indexes: Vec<(String, String)>,
}

/// A foreign key read from PostgreSQL.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportForeignKey {
    pub columns: Vec<String>,
    pub parent: String,
    pub parent_columns: Vec<String>,
    pub on_update: String,
    pub on_delete: String,
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
    pub tables: Vec<ImportTableReport>,
    pub warnings: Vec<String>,
    pub problems: Vec<Problem>,
    pub millis: u64,
}

impl ImportReport {
    /// Every table verified.
    pub fn ok(&self) -> bool {
        self.tables.iter().all(|t| t.verified)
    }
}

/// Chooses the SQLite declared type and the read expression of a column
/// (pure). `category` is `pg_type.typcategory`.
pub fn map_pg_column(
    name: &str,
    type_name: &str,
    category: &str,
) -> (PgType, String, String, Option<String>) {
    let q = quote(name);
    match PgType::parse(type_name) {
        Some(t) => {
            let decl = match &t {
                PgType::Boolean => "BOOLEAN".to_string(),
                PgType::SmallInt => "SMALLINT".into(),
                PgType::Integer => "INTEGER".into(),
                PgType::BigInt => "BIGINT".into(),
                PgType::Real => "REAL".into(),
                PgType::Double => "DOUBLE PRECISION".into(),
                PgType::Numeric(None) => "NUMERIC".into(),
                PgType::Numeric(Some((p, s))) => format!("NUMERIC({p},{s})"),
                PgType::Text => "TEXT".into(),
                PgType::Varchar(None) => "VARCHAR".into(),
                PgType::Varchar(Some(n)) => format!("VARCHAR({n})"),
                PgType::Bytea => "BLOB".into(),
                PgType::Date => "DATE".into(),
                PgType::Time => "TIME".into(),
                PgType::Timestamp(_) => "DATETIME".into(),
                PgType::TimestampTz(_) => "TIMESTAMPTZ".into(),
                PgType::Json => "JSON".into(),
                PgType::Jsonb => "JSONB".into(),
                PgType::Uuid => "UUID".into(),
            };
            (t, q, decl, None)
        }
        None if matches!(category, "E" | "S") => (
            PgType::Text,
            format!("{q}::text"),
            "TEXT".into(),
            Some(format!("{type_name} stored as its text form")),
        ),
        None => (
            PgType::Text,
            format!("to_jsonb({q})::text"),
            "JSON".into(),
            Some(format!("{type_name} stored as JSON text")),
        ),
    }
}

/// Rewrites a PostgreSQL default for SQLite, or `None` if it cannot be.
pub fn map_default(expr: &str, t: &PgType) -> Option<String> {
    let e = expr.trim();
    if e.starts_with("nextval(") {
        return None;
    }
    let lower = e.to_ascii_lowercase();
    match lower.as_str() {
        "now()"
        | "current_timestamp"
        | "transaction_timestamp()"
        | "statement_timestamp()"
        | "clock_timestamp()"
        | "localtimestamp" => return Some("CURRENT_TIMESTAMP".into()),
        "current_date" => return Some("CURRENT_DATE".into()),
        "current_time" | "localtime" => return Some("CURRENT_TIME".into()),
        "true" => return Some("1".into()),
        "false" => return Some("0".into()),
        "null" => return Some("NULL".into()),
        _ => {}
    }
    // 'literal'::type
    if let Some(rest) = e.strip_prefix('\'') {
        let mut end = None;
        let b = rest.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\'' {
                if b.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                end = Some(i);
                break;
            }
            i += 1;
        }
        let end = end?;
        let lit = &rest[..end];
        let after = rest[end + 1..].trim();
        if !(after.is_empty() || after.starts_with("::")) {
            return None;
        }
        if *t == PgType::Boolean {
            return match lit {
                "t" | "true" => Some("1".into()),
                "f" | "false" => Some("0".into()),
                _ => None,
            };
        }
        return Some(format!("'{lit}'"));
    }
    // A number, maybe in parentheses or with a cast.
    let n = e
        .trim_start_matches('(')
        .split("::")
        .next()?
        .trim_end_matches(')')
        .trim();
    if n.parse::<f64>().is_ok() {
        return Some(n.to_string());
    }
    None
}

async fn read_catalog(
    client: &Client,
    schema: &str,
) -> Result<(Vec<ImportTable>, Vec<String>), ImportError> {
    let tables = client
        .query(
            "SELECT c.oid, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname",
            &[&schema],
        )
        .await
        .map_err(pg("listing tables"))?;
    let mut names: BTreeMap<u32, (String, BTreeMap<i16, String>)> = BTreeMap::new();
    let mut out = vec![];
    let mut warnings = vec![];
    for t in &tables {
        let oid: u32 = t.get(0);
        let name: String = t.get(1);
        let cols = client
            .query(
                "SELECT a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                        pg_get_expr(d.adbin, d.adrelid), ty.typcategory::text, a.attidentity::text \
                 FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid \
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&oid],
            )
            .await
            .map_err(pg(format!("reading the columns of {name:?}")))?;
        let mut by_num = BTreeMap::new();
        let mut columns = vec![];
        for c in cols {
            let num: i16 = c.get(0);
            let cname: String = c.get(1);
            let tname: String = c.get(2);
            let cat: String = c.get(5);
            let (read_as, select, sqlite_type, warn) = map_pg_column(&cname, &tname, &cat);
            if let Some(w) = warn {
                warnings.push(format!("{}.{}: {w}", quote(&name), quote(&cname)));
            }
            let dflt: Option<String> = c.get(4);
            let default = match &dflt {
                Some(d) => {
                    let m = map_default(d, &read_as);
                    if m.is_none() && !d.starts_with("nextval(") {
                        warnings.push(format!(
                            "{}.{}: default {d} not imported (no SQLite equivalent)",
                            quote(&name),
                            quote(&cname)
                        ));
                    }
                    m
                }
                None => None,
            };
            let identity: String = c.get(6);
            let serial =
                !identity.is_empty() || dflt.as_deref().is_some_and(|d| d.starts_with("nextval("));
            by_num.insert(num, cname.clone());
            columns.push(ImportColumn {
                name: cname,
                pg_type_name: tname,
                read_as,
                select,
                sqlite_type,
                not_null: c.get(3),
                default,
                serial,
            });
        }
        names.insert(oid, (name.clone(), by_num));
        out.push((
            oid,
            ImportTable {
                name,
                columns,
                primary_key: vec![],
                uniques: vec![],
                foreign_keys: vec![],
                checks: vec![],
                indexes: vec![],
            },
        ));
    }
    for (oid, t) in out.iter_mut() {
        let cons = client
            .query(
                "SELECT contype::text, conkey, confrelid, confkey, confupdtype::text, confdeltype::text, \
                        pg_get_constraintdef(oid), conname::text \
                 FROM pg_constraint WHERE conrelid = $1 ORDER BY conname",
                &[&*oid],
            )
            .await
            .map_err(pg(format!("reading the constraints of {:?}", t.name)))?;
        let cols_of = |rel: u32, nums: &Option<Vec<i16>>| -> Option<Vec<String>> {
            let (_, m) = names.get(&rel)?;
            nums.as_ref()?
                .iter()
                .map(|n| m.get(n).cloned())
                .collect::<Option<Vec<_>>>()
        };
        for c in cons {
            let kind: String = c.get(0);
            let key: Option<Vec<i16>> = c.get(1);
            let def: String = c.get(6);
            match kind.as_str() {
                "p" => t.primary_key = cols_of(*oid, &key).unwrap_or_default(),
                "u" => {
                    if let Some(k) = cols_of(*oid, &key) {
                        t.uniques.push(k)
                    }
                }
                "f" => {
                    let parent: u32 = c.get(2);
                    let pkey: Option<Vec<i16>> = c.get(3);
                    match (cols_of(*oid, &key), names.get(&parent), cols_of(parent, &pkey)) {
                        (Some(k), Some((pname, _)), Some(pk)) => {
                            let action = |a: &str| {
                                match a {
                                    "c" => "CASCADE",
                                    "n" => "SET NULL",
                                    "d" => "SET DEFAULT",
                                    "r" => "RESTRICT",
                                    _ => "NO ACTION",
                                }
                                .to_string()
                            };
                            t.foreign_keys.push(ImportForeignKey {
                                columns: k,
                                parent: pname.clone(),
                                parent_columns: pk,
                                on_update: action(&c.get::<_, String>(4)),
                                on_delete: action(&c.get::<_, String>(5)),
                            });
                        }
                        _ => warnings.push(format!(
                            "{}: foreign key {def} refers to a table outside schema {schema:?}; not imported",
                            quote(&t.name)
                        )),
                    }
                }
                "c" => t.checks.push(strip_casts(&def)),
                _ => warnings.push(format!(
                    "{}: constraint {def} not imported (no SQLite equivalent)",
                    quote(&t.name)
                )),
            }
        }
        let ixs = client
            .query(
                "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1 \
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x')) \
                 ORDER BY c.relname",
                &[&*oid],
            )
            .await
            .map_err(pg(format!("reading the indexes of {:?}", t.name)))?;
        t.indexes = ixs.iter().map(|r| (r.get(0), r.get(1))).collect();
        // A sequence survives only as the rowid alias (SQLite hands out max+1).
        let rowid = rowid_pk(t);
        for c in &t.columns {
            if c.serial && rowid.as_deref() != Some(c.name.as_str()) {
                warnings.push(format!(
                    "{}.{}: its sequence default is not imported (SQLite has sequences only for INTEGER PRIMARY KEY)",
                    quote(&t.name),
                    quote(&c.name)
                ));
            }
        }
    }
    // Views are not imported: their SQL is PostgreSQL's.
    let views = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('v', 'm') ORDER BY 1",
            &[&schema],
        )
        .await
        .map_err(pg("listing views"))?;
    for v in views {
        let name: String = v.get(0);
        warnings.push(format!(
            "view {} not imported (recreate it in SQLite's dialect)",
            quote(&name)
        ));
    }
    Ok((out.into_iter().map(|(_, t)| t).collect(), warnings))
}

/// The column that becomes the rowid alias: a single integer primary key.
pub fn rowid_pk(t: &ImportTable) -> Option<String> {
    (t.primary_key.len() == 1
        && t.columns.iter().any(|c| {
            c.name == t.primary_key[0]
                && matches!(
                    c.read_as,
                    PgType::SmallInt | PgType::Integer | PgType::BigInt
                )
        }))
    .then(|| t.primary_key[0].clone())
}

/// `CREATE TABLE` for SQLite (pure). A single integer primary key becomes
/// the rowid alias (`INTEGER PRIMARY KEY`).
pub fn sqlite_create_table(t: &ImportTable, checks: &[String]) -> String {
    let rowid_pk = rowid_pk(t).is_some();
    let cols = |c: &[String]| c.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let mut parts: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            if rowid_pk && c.name == t.primary_key[0] {
                return format!("{} INTEGER PRIMARY KEY", quote(&c.name));
            }
            let mut s = format!("{} {}", quote(&c.name), c.sqlite_type);
            if c.not_null {
                s.push_str(" NOT NULL");
            }
            if let Some(d) = &c.default {
                s.push_str(&format!(" DEFAULT ({d})"));
            }
            s
        })
        .collect();
    if !t.primary_key.is_empty() && !rowid_pk {
        parts.push(format!("PRIMARY KEY ({})", cols(&t.primary_key)));
    }
    for u in &t.uniques {
        parts.push(format!("UNIQUE ({})", cols(u)));
    }
    for fk in &t.foreign_keys {
        parts.push(format!(
            "FOREIGN KEY ({}) REFERENCES {} ({}) ON UPDATE {} ON DELETE {}",
            cols(&fk.columns),
            quote(&fk.parent),
            cols(&fk.parent_columns),
            fk.on_update,
            fk.on_delete
        ));
    }
    for c in checks {
        parts.push(c.clone());
    }
    format!(
        "CREATE TABLE {} (\n  {}\n)",
        quote(&t.name),
        parts.join(",\n  ")
    )
}

/// Rewrites `pg_get_indexdef` output for SQLite: drop the schema and
/// `USING btree`; casts and operator classes are left to SQLite to refuse.
pub fn sqlite_index(schema: &str, table: &str, def: &str) -> String {
    let on = format!(" ON {} USING btree ", qualified_pg(schema, table));
    let on_bare = format!(
        " ON {} USING btree ",
        qualified_pg("", table).trim_start_matches('.')
    );
    strip_casts(
        &def.replace(&on, &format!(" ON {} ", quote(table)))
            .replace(&on_bare, &format!(" ON {} ", quote(table))),
    )
}

/// A name as `pg_get_indexdef` prints it: quoted only when it must be.
fn qualified_pg(schema: &str, table: &str) -> String {
    let q = |s: &str| {
        let plain = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit());
        if plain { s.to_string() } else { quote(s) }
    };
    if schema.is_empty() {
        format!(".{}", q(table))
    } else {
        format!("{}.{}", q(schema), q(table))
    }
}

/// Removes PostgreSQL casts (`(x)::text`, `0::numeric(10,2)`, `'a'::character
/// varying[]`) and spells `~~` as LIKE, so that simple checks and index
/// expressions printed by PostgreSQL run in SQLite (pure).
pub fn strip_casts(sql: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(sql.len());
    let b = sql.as_bytes();
    // Compared as bytes: `i` may be inside a multi-byte character, or past
    // the end after an unterminated quote or modifier.
    let at = |i: usize| b.get(i..).unwrap_or_default();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' {
            in_str = !in_str;
        }
        if !in_str && c == b':' && b.get(i + 1) == Some(&b':') {
            i += 2;
            // A type name, maybe several words, maybe with a modifier and [].
            loop {
                if b.get(i) == Some(&b'"') {
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        i += 1;
                    }
                    i += 1;
                }
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                const MORE: [&[u8]; 4] = [
                    b" varying",
                    b" precision",
                    b" without time zone",
                    b" with time zone",
                ];
                let more = MORE.iter().find(|w| at(i).starts_with(w));
                match more {
                    Some(w) => i += w.len(),
                    None => break,
                }
            }
            if b.get(i) == Some(&b'(') {
                while i < b.len() && b[i] != b')' {
                    i += 1;
                }
                i += 1;
            }
            while at(i).starts_with(b"[]") {
                i += 2;
            }
            continue;
        }
        if !in_str && at(i).starts_with(b"!~~") {
            out.extend_from_slice(b"NOT LIKE");
            i += 3;
            continue;
        }
        if !in_str && at(i).starts_with(b"~~") {
            out.extend_from_slice(b"LIKE");
            i += 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    // Only ASCII was removed or added: the rest is the input's UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| sql.to_string())
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
    let client = connect(url).await.map_err(|source| ImportError::Connect {
        url: redact(url),
        source,
    })?;
    let schema = opts.schema.clone();
    let (tables, warnings) = read_catalog(&client, &schema).await?;
    if tables.is_empty() {
        return Err(ImportError::NoTables {
            schema,
            url: redact(url),
        });
    }
    // Numeric columns holding more digits than a double keeps: SQLite's
    // NUMERIC affinity would round them, so they are declared TEXT.
    let mut tables = tables;
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
    let mut report = tokio::task::spawn_blocking(move || {
        write_sqlite(&handle, &client, &schema, &tables, &tmp, progress).and_then(|mut r| {
            std::fs::rename(&tmp, &out_path).map_err(|source| ImportError::Io {
                path: out_path.clone(),
                source,
            })?;
            r.warnings.splice(0..0, warnings);
            Ok(r)
        })
    })
    .await
    .map_err(|e| ImportError::Worker(e.to_string()))??;
    report.millis = started.elapsed().as_millis() as u64;
    Ok(report)
}

fn write_sqlite(
    rt: &tokio::runtime::Handle,
    client: &Client,
    schema: &str,
    tables: &[ImportTable],
    path: &Path,
    progress: crate::progress::ProgressSink,
) -> Result<ImportReport, ImportError> {
    let sq = |doing: &str| {
        let doing = doing.to_string();
        let path = path.to_path_buf();
        move |source| ImportError::Sqlite {
            path,
            doing,
            source,
        }
    };
    let conn = rusqlite::Connection::open(path).map_err(sq("creating the database"))?;
    // Tables load one by one in name order, children possibly before their
    // parents: foreign keys are checked once, at the end (rusqlite's bundled
    // SQLite enforces them by default).
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA foreign_keys = OFF;",
    )
    .map_err(sq("setting pragmas"))?;
    let mut report = ImportReport::default();
    // Tables, with the checks SQLite accepts.
    for t in tables {
        let mut ok_checks = vec![];
        for c in &t.checks {
            let probe = format!(
                "CREATE TEMP TABLE litevault_probe ({}, {c}); DROP TABLE litevault_probe;",
                t.columns
                    .iter()
                    .map(|c| quote(&c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            match conn.execute_batch(&probe) {
                Ok(()) => ok_checks.push(c.clone()),
                Err(e) => {
                    let _ = conn.execute_batch("DROP TABLE IF EXISTS temp.litevault_probe");
                    report.problems.push(Problem {
                        object: format!("check on {}", quote(&t.name)),
                        sqlite_sql: c.clone(),
                        reason: format!("SQLite cannot run it: {e}"),
                    });
                }
            }
        }
        conn.execute_batch(&sqlite_create_table(t, &ok_checks))
            .map_err(sq(&format!("creating table {:?}", t.name)))?;
    }
    let bar = progress;
    bar.start(crate::progress::Unit::Rows, None);
    let finish = bar.finish_on_drop();
    for t in tables {
        bar.message(&t.name);
        let t0 = Instant::now();
        let types: Vec<PgType> = t.columns.iter().map(|c| c.read_as.clone()).collect();
        let select: Vec<&str> = t.columns.iter().map(|c| c.select.as_str()).collect();
        let sql = format!(
            "COPY (SELECT {} FROM {}) TO STDOUT (FORMAT binary)",
            select.join(", "),
            qualified(schema, &t.name)
        );
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&t.name),
            t.columns
                .iter()
                .map(|c| quote(&c.name))
                .collect::<Vec<_>>()
                .join(", "),
            vec!["?"; t.columns.len()].join(", ")
        );
        conn.execute_batch("BEGIN").map_err(sq("beginning"))?;
        let mut stmt = conn
            .prepare(&insert)
            .map_err(sq(&format!("preparing the insert into {:?}", t.name)))?;
        let mut sum = TableChecksum::default();
        let mut reader = TupleReader::new(types.len());
        let stream = rt
            .block_on(client.copy_out(&sql))
            .map_err(pg(format!("reading {:?}", t.name)))?;
        // PostgreSQL sends one message per row: an async task gathers them
        // into 1 MiB batches so that this thread wakes once per batch.
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<Result<bytes::Bytes, tokio_postgres::Error>>(4);
        rt.spawn(async move {
            let mut stream = Box::pin(stream);
            let mut buf = bytes::BytesMut::with_capacity(1 << 20);
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => {
                        buf.extend_from_slice(&c);
                        if buf.len() >= 1 << 20 && tx.send(Ok(buf.split().freeze())).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            if !buf.is_empty() {
                let _ = tx.send(Ok(buf.freeze())).await;
            }
        });
        let mut row: Vec<Value> = Vec::with_capacity(types.len());
        let mut failure: Option<ImportError> = None;
        while let Some(chunk) = rx.blocking_recv() {
            let chunk = chunk.map_err(pg(format!("reading {:?}", t.name)))?;
            reader.push(&chunk);
            let mut n = 0u64;
            reader
                .drain(|tuple| {
                    if failure.is_some() {
                        return;
                    }
                    sum.add_tuple(&types, tuple);
                    row.clear();
                    for ((f, ty), c) in (TupleFields { rest: tuple }).zip(&types).zip(&t.columns) {
                        let v = match f {
                            None => Value::Null,
                            Some(b) => match decode_to_sqlite(ty, b) {
                                Some(v) => v,
                                None => {
                                    failure = Some(ImportError::Decode {
                                        table: t.name.clone(),
                                        column: c.name.clone(),
                                        pg_type: c.pg_type_name.clone(),
                                    });
                                    return;
                                }
                            },
                        };
                        row.push(v);
                    }
                    if let Err(e) = stmt.execute(rusqlite::params_from_iter(row.iter())) {
                        failure = Some(ImportError::Sqlite {
                            path: path.to_path_buf(),
                            doing: format!("inserting into {:?}", t.name),
                            source: e,
                        });
                    }
                    n += 1;
                })
                .map_err(|source| ImportError::CopyFormat {
                    table: t.name.clone(),
                    source,
                })?;
            if let Some(e) = failure.take() {
                return Err(e);
            }
            bar.advance(n);
        }
        reader.finish().map_err(|source| ImportError::CopyFormat {
            table: t.name.clone(),
            source,
        })?;
        drop(stmt);
        conn.execute_batch("COMMIT").map_err(sq("committing"))?;
        tracing::debug!("{}: loaded in {} ms", t.name, t0.elapsed().as_millis());
        let t1 = Instant::now();
        let sqlite =
            sqlite_checksum(&conn, t, &types).map_err(sq(&format!("reading back {:?}", t.name)))?;
        tracing::debug!("{}: read back in {} ms", t.name, t1.elapsed().as_millis());
        report.tables.push(ImportTableReport {
            table: t.name.clone(),
            verified: sqlite == sum,
            postgres: sum,
            sqlite,
        });
    }
    drop(finish);
    let t2 = Instant::now();
    for t in tables {
        for (name, def) in &t.indexes {
            let sql = sqlite_index(schema, &t.name, def);
            if let Err(e) = conn.execute_batch(&sql) {
                report.problems.push(Problem {
                    object: format!("index {}", quote(name)),
                    sqlite_sql: def.clone(),
                    reason: format!("SQLite cannot run it: {e}"),
                });
            }
        }
    }
    tracing::debug!("indexes in {} ms", t2.elapsed().as_millis());
    let t3 = Instant::now();
    let integrity: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(sq("checking integrity"))?;
    if integrity != "ok" {
        report.warnings.push(format!("quick_check: {integrity}"));
    }
    tracing::debug!("quick_check in {} ms", t3.elapsed().as_millis());
    let fk: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .map_err(sq("checking foreign keys"))?;
    if fk > 0 {
        report
            .warnings
            .push(format!("{fk} row(s) fail SQLite's foreign_key_check"));
    }
    tracing::debug!(
        "integrity and foreign key checks in {} ms",
        t3.elapsed().as_millis()
    );
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .map_err(sq("switching to WAL"))?;
    drop(conn);
    Ok(report)
}

/// The checksum of an imported SQLite table, each value converted back to
/// the PostgreSQL type it came from.
fn sqlite_checksum(
    conn: &rusqlite::Connection,
    t: &ImportTable,
    types: &[PgType],
) -> rusqlite::Result<TableChecksum> {
    let sql = format!(
        "SELECT {} FROM {}",
        t.columns
            .iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", "),
        quote(&t.name)
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let convs: Vec<Conversion> = types
        .iter()
        .map(|t| Conversion {
            pg_type: t.clone(),
            epoch: EpochUnit::Seconds,
        })
        .collect();
    let mut sum = TableChecksum::default();
    let mut buf = bytes::BytesMut::new();
    while let Some(r) = rows.next()? {
        buf.clear();
        let mut ok = true;
        for (i, c) in convs.iter().enumerate() {
            if value::encode_field(&mut buf, c, r.get_ref(i)?).is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            sum.add_tuple(types, &buf);
        } else {
            // A value that does not convert back cannot match: count the row
            // with a checksum no real row has.
            sum.rows += 1;
            sum.sum = sum.sum.wrapping_add(1);
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types() {
        assert_eq!(map_pg_column("a", "boolean", "B").2, "BOOLEAN");
        assert_eq!(
            map_pg_column("a", "timestamp with time zone", "D").2,
            "TIMESTAMPTZ"
        );
        assert_eq!(
            map_pg_column("a", "character varying(5)", "S").2,
            "VARCHAR(5)"
        );
        let (t, sel, decl, warn) = map_pg_column("a", "integer[]", "A");
        assert_eq!(
            (t, sel.as_str(), decl.as_str()),
            (PgType::Text, "to_jsonb(\"a\")::text", "JSON")
        );
        assert!(warn.unwrap().contains("JSON"));
        let (_, sel, decl, _) = map_pg_column("a", "mood", "E");
        assert_eq!((sel.as_str(), decl.as_str()), ("\"a\"::text", "TEXT"));
    }

    #[test]
    fn defaults() {
        assert_eq!(
            map_default("'x'::text", &PgType::Text).as_deref(),
            Some("'x'")
        );
        assert_eq!(
            map_default("'it''s'::character varying", &PgType::Text).as_deref(),
            Some("'it''s'")
        );
        assert_eq!(map_default("true", &PgType::Boolean).as_deref(), Some("1"));
        assert_eq!(
            map_default("now()", &PgType::TimestampTz(None)).as_deref(),
            Some("CURRENT_TIMESTAMP")
        );
        assert_eq!(
            map_default("'-1'::integer", &PgType::Integer).as_deref(),
            Some("'-1'")
        );
        assert_eq!(map_default("(-5)", &PgType::Integer).as_deref(), Some("-5"));
        assert_eq!(
            map_default("nextval('t_id_seq'::regclass)", &PgType::Integer),
            None
        );
        assert_eq!(map_default("gen_random_uuid()", &PgType::Uuid), None);
    }

    #[test]
    fn casts_are_stripped() {
        assert_eq!(
            strip_casts("CHECK ((length((name)::text) > 0))"),
            "CHECK ((length((name)) > 0))"
        );
        assert_eq!(
            strip_casts("CHECK ((n >= (0)::numeric(10,2)) AND (s ~~ 'é::x%'::character varying))"),
            "CHECK ((n >= (0)) AND (s LIKE 'é::x%'))"
        );
        assert_eq!(strip_casts("(a)::timestamp without time zone"), "(a)");
        // Unterminated quotes and modifiers, and multi-byte characters
        // outside string literals.
        assert_eq!(strip_casts("a::\"unterminated"), "a");
        assert_eq!(strip_casts("a::numeric(10"), "a");
        assert_eq!(strip_casts("\"\u{e9}\" ~~ x"), "\"\u{e9}\" LIKE x");
    }

    #[test]
    fn index_rewrite() {
        assert_eq!(
            sqlite_index(
                "public",
                "t",
                "CREATE INDEX ix ON public.t USING btree (lower(b)) WHERE (a > 0)"
            ),
            "CREATE INDEX ix ON \"t\" (lower(b)) WHERE (a > 0)"
        );
        assert_eq!(
            sqlite_index(
                "public",
                "My T",
                "CREATE UNIQUE INDEX \"Ix\" ON public.\"My T\" USING btree (a DESC)"
            ),
            "CREATE UNIQUE INDEX \"Ix\" ON \"My T\" (a DESC)"
        );
    }
}
