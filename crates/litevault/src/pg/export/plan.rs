//! Planning an export: the SQLite schema and value statistics mapped to
//! PostgreSQL column types, and a plan re-targeted at an existing table.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

use tokio_postgres::Client;

use super::{ExportError, ExportMode, ExportOptions, open_ro, pg};
use crate::pg::ddl::{self, SourceSchema, TablePlan};
use crate::pg::ident::{qualified, quote};
use crate::pg::select::{Source, check_foreign_keys};
use crate::pg::source;
use crate::pg::types::{ColumnMapping, ColumnStats, EpochUnit, Orm, PgType, map_column};
use crate::task::lock_or_recover;

/// What the export will do: the schema read from SQLite and every table's
/// column types.
#[derive(Clone, Debug)]
pub struct ExportPlan {
    pub source: SourceSchema,
    pub tables: Vec<TablePlan>,
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
    let mut source = source::read_schema(&conn).map_err(sq)?;
    if !opts.tables.is_everything() {
        let trigger_tables: Vec<(String, String)> = conn
            .prepare("SELECT name, tbl_name FROM sqlite_schema WHERE type = 'trigger'")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()
            })
            .map_err(sq)?;
        select_tables(path, &mut source, &trigger_tables, opts)?;
    }
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

/// Keeps the selected tables, and the triggers and virtual tables of those;
/// views stay (one naming a table left out is refused by PostgreSQL and
/// reported). A selected table with a foreign key into a table left out is
/// an error when the export creates keys (see [`crate::pg::select`]).
fn select_tables(
    path: &Path,
    source: &mut SourceSchema,
    trigger_tables: &[(String, String)],
    opts: &ExportOptions,
) -> Result<(), ExportError> {
    let from = Source {
        fold_case: true,
        schema: None,
        where_: format!(" in {}", path.display()),
        how_to_list: format!("List them with: sqlite3 {} .tables", path.display()),
    };
    let all: Vec<&str> = source.tables.iter().map(|t| t.name.as_str()).collect();
    let chosen = opts.tables.choose(&all, &from)?;
    if opts.mode == ExportMode::Full {
        let keys = source.tables.iter().flat_map(|t| {
            t.foreign_keys
                .iter()
                .map(move |k| (t.name.as_str(), k.parent.as_str()))
        });
        check_foreign_keys(keys, &all, &chosen, true)?;
    }
    let chosen: BTreeSet<String> = chosen.iter().map(|s| s.to_string()).collect();
    source.tables.retain(|t| chosen.contains(&t.name));
    source.triggers.retain(|t| {
        trigger_tables
            .iter()
            .find(|(name, _)| name == &t.name)
            .is_some_and(|(_, table)| chosen.iter().any(|c| c.eq_ignore_ascii_case(table)))
    });
    source
        .virtual_tables
        .retain(|v| opts.tables.selects(&v.name, &from));
    Ok(())
}

/// The DDL the export would run (`--schema-only`).
pub fn schema_script(plan: &ExportPlan, schema: &str) -> String {
    ddl::script(schema, &plan.tables, &plan.source)
}

/// With a table selection, `TRUNCATE ... CASCADE` must not empty a table
/// the selection leaves out: a foreign key from such a table (in any schema)
/// into one of `truncated` is an error before anything is written.
/// Cascades further down start from a truncated table, so checking the
/// direct children of every truncated table covers them.
pub(super) async fn refuse_truncating_unselected(
    client: &Client,
    schema: &str,
    truncated: &[String],
) -> Result<(), ExportError> {
    let rows = client
        .query(
            "SELECT cn.nspname::text, cc.relname::text, pc.relname::text \
             FROM pg_constraint k \
             JOIN pg_class pc ON pc.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
             JOIN pg_class cc ON cc.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace \
             WHERE k.contype = 'f' AND pn.nspname = $1 AND pc.relname = ANY($2) ORDER BY 1, 2, 3",
            &[&schema, &truncated],
        )
        .await
        .map_err(pg("looking for foreign keys into the tables to truncate"))?;
    for r in rows {
        let (child_schema, child, parent): (String, String, String) =
            (r.get(0), r.get(1), r.get(2));
        if child_schema != schema || !truncated.contains(&child) {
            return Err(ExportError::TruncateCascades {
                parent,
                child: qualified(&child_schema, &child),
            });
        }
    }
    Ok(())
}

/// A column of an existing PostgreSQL table, read from the catalog.
struct PgColumn {
    name: String,
    /// As `format_type()` prints it.
    shown: String,
    /// What litevault writes into it; `None` if it cannot.
    ty: Option<PgType>,
    not_null: bool,
    has_default: bool,
    /// `GENERATED ALWAYS AS (...) STORED`: PostgreSQL computes it.
    generated: bool,
}

/// The type litevault writes for a catalog type: enums and citext by their
/// OID, the rest by name (domains are resolved to their base type first).
fn catalog_type(
    typtype: &str,
    typname: &str,
    oid: u32,
    shown: &str,
    labels: &Option<Vec<String>>,
) -> Option<PgType> {
    match (typtype, typname) {
        ("e", _) => Some(PgType::Labelled {
            name: shown.to_string(),
            oid,
            labels: Some(labels.clone().unwrap_or_default()),
        }),
        (_, "citext") => Some(PgType::Labelled {
            name: shown.to_string(),
            oid,
            labels: None,
        }),
        _ => PgType::parse(shown),
    }
}

/// The columns of an existing table, in order.
async fn existing_columns(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<Vec<PgColumn>, ExportError> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''), a.attgenerated <> '', \
                    b.typtype::text, b.typname::text, b.oid::int8, \
                    format_type(b.oid, CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END), \
                    e.typtype::text, e.typname::text, e.oid::int8, format_type(e.oid, a.atttypmod), \
                    (SELECT array_agg(l.enumlabel::text ORDER BY l.enumsortorder) FROM pg_enum l \
                     WHERE l.enumtypid = coalesce(e.oid, b.oid)) \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
             LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typcategory = 'A' \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 \
             AND NOT a.attisdropped ORDER BY a.attnum",
            &[&qualified(schema, table)],
        )
        .await
        .map_err(pg(format!("reading the columns of {table:?}")))?;
    Ok(rows
        .iter()
        .map(|r| {
            let labels: Option<Vec<String>> = r.get(13);
            let base: (String, String, i64, String) = (r.get(5), r.get(6), r.get(7), r.get(8));
            let elem: Option<String> = r.get(9);
            let ty = match elem {
                Some(etyptype) => {
                    let (ename, eoid, eshown): (String, i64, String) =
                        (r.get(10), r.get(11), r.get(12));
                    catalog_type(&etyptype, &ename, eoid as u32, &eshown, &labels).map(|elem| {
                        PgType::Array {
                            elem: Box::new(elem),
                            elem_oid: eoid as u32,
                        }
                    })
                }
                None => catalog_type(&base.0, &base.1, base.2 as u32, &base.3, &labels),
            };
            PgColumn {
                name: r.get(0),
                shown: r.get(1),
                ty,
                not_null: r.get(2),
                has_default: r.get(3),
                generated: r.get(4),
            }
        })
        .collect())
}

/// Re-targets a plan at an existing table: its column types come from
/// PostgreSQL's catalog, checked before the first row. Columns PostgreSQL
/// computes itself (`GENERATED ALWAYS AS`) are left out, with a note.
pub(super) async fn retarget(
    client: &Client,
    path: &Path,
    schema: &str,
    orm: Orm,
    plan: &mut TablePlan,
) -> Result<Vec<String>, ExportError> {
    let cols = existing_columns(client, schema, &plan.table.name).await?;
    let mut notes = vec![];
    let t = plan.table.name.clone();
    let mut keep = vec![true; plan.table.columns.len()];
    let mut kinds = vec![None; plan.table.columns.len()];
    for (k, (c, m)) in plan
        .table
        .columns
        .iter()
        .zip(plan.columns.iter_mut())
        .enumerate()
    {
        let Some(pc) = cols.iter().find(|x| x.name == c.name) else {
            let hint = cols
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case(&c.name))
                .map(|x| format!(" (it has {:?}: names differ in case)", x.name))
                .unwrap_or_default();
            return Err(ExportError::MissingColumn {
                table: t.clone(),
                column: c.name.clone(),
                hint,
            });
        };
        if pc.generated {
            keep[k] = false;
            continue;
        }
        let pg_type = pc.ty.clone().ok_or_else(|| ExportError::UnsupportedType {
            table: t.clone(),
            column: c.name.clone(),
            pg_type: pc.shown.clone(),
        })?;
        if pg_type.is_temporal() {
            kinds[k] = Some(source::StatsKind::Temporal);
        } else if pg_type == PgType::Interval {
            kinds[k] = Some(source::StatsKind::Basic);
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
    // Numbers in an interval column are Django's microseconds, else seconds.
    if kinds.iter().any(|k| k.is_some()) {
        let (path, table, columns) = (path.to_path_buf(), t.clone(), plan.table.columns.clone());
        let stats = crate::task::blocking(move || {
            let conn = open_ro(&path)?;
            source::column_stats(&conn, &table, &columns, &kinds).map_err(|source| {
                ExportError::Sqlite {
                    path: path.clone(),
                    source,
                }
            })
        })
        .await??;
        for ((m, st), c) in plan.columns.iter_mut().zip(&stats).zip(&plan.table.columns) {
            if m.pg_type.is_temporal() {
                m.epoch = EpochUnit::from_max_abs(st.int_max_abs().max(st.real_max_abs as u64));
            } else if m.pg_type == PgType::Interval {
                let (unit, why) = match orm {
                    Orm::Django => (EpochUnit::Micros, "microseconds (Django's DurationField)"),
                    _ => (EpochUnit::Seconds, "seconds"),
                };
                m.epoch = unit;
                let numbers = st.integers + st.reals;
                if numbers > 0 {
                    notes.push(format!(
                        "{}.{}: {numbers} number(s) read as durations in {why}",
                        quote(&t),
                        quote(&c.name)
                    ));
                }
            }
        }
    }
    for (c, _) in plan.table.columns.iter().zip(&keep).filter(|(_, k)| !**k) {
        notes.push(format!(
            "{}.{}: a generated column in PostgreSQL, which computes it: the SQLite values were not loaded",
            quote(&t),
            quote(&c.name)
        ));
    }
    let mut kept = keep.iter();
    plan.table.columns.retain(|_| *kept.next().unwrap_or(&true));
    let mut kept = keep.iter();
    plan.columns.retain(|_| *kept.next().unwrap_or(&true));
    for pc in &cols {
        if pc.not_null && !pc.has_default && !plan.table.columns.iter().any(|c| c.name == pc.name) {
            return Err(ExportError::RequiredColumn {
                table: t.clone(),
                column: pc.name.clone(),
            });
        }
    }
    Ok(notes)
}

/// When the ORM's bookkeeping table is loaded into an existing one, the
/// migrations PostgreSQL's schema was made by and the ones the SQLite data
/// was written under should be the same; a note says how they differ.
pub(super) async fn migrations_differ(
    client: &Client,
    path: &Path,
    schema: &str,
    orm: Orm,
) -> Result<Option<String>, ExportError> {
    let key = match orm {
        Orm::Django => "app || '.' || name",
        Orm::Alembic => "version_num",
        Orm::Rails => "version",
        Orm::Prisma => "migration_name",
        Orm::None => return Ok(None),
    };
    let Some(table) = orm.bookkeeping_table() else {
        return Ok(None);
    };
    let sql = format!("SELECT CAST({key} AS TEXT) FROM {}", quote(table));
    let (path_c, sql_c) = (path.to_path_buf(), sql.clone());
    let sqlite: BTreeSet<String> = crate::task::blocking(move || {
        let conn = open_ro(&path_c)?;
        let mut st = conn.prepare(&sql_c).map_err(|source| ExportError::Sqlite {
            path: path_c.clone(),
            source,
        })?;
        let rows = st
            .query_map([], |r| r.get::<_, Option<String>>(0))
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|source| ExportError::Sqlite {
                path: path_c.clone(),
                source,
            })?;
        Ok::<_, ExportError>(rows.into_iter().flatten().collect())
    })
    .await??;
    let pg_sql = format!(
        "SELECT CAST({key} AS TEXT) FROM {}",
        qualified(schema, table)
    );
    let Ok(rows) = client.query(&pg_sql, &[]).await else {
        // Not there, or another shape: nothing to compare.
        return Ok(None);
    };
    let postgres: BTreeSet<String> = rows.iter().filter_map(|r| r.get(0)).collect();
    if postgres.is_empty() || postgres == sqlite {
        return Ok(None);
    }
    let list = |s: Vec<&String>| -> String {
        let n = s.len();
        let mut v: Vec<String> = s.into_iter().take(5).cloned().collect();
        if n > 5 {
            v.push(format!("and {} more", n - 5));
        }
        v.join(", ")
    };
    let only_sqlite = list(sqlite.difference(&postgres).collect());
    let only_pg = list(postgres.difference(&sqlite).collect());
    Ok(Some(format!(
        "{table}: the migrations differ (in SQLite only: [{only_sqlite}]; in PostgreSQL only: \
         [{only_pg}]): the data was written under another schema version than PostgreSQL's; \
         run the same migrations on both"
    )))
}
