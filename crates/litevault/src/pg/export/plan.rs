//! Planning an export: the SQLite schema and value statistics mapped to
//! PostgreSQL column types, and a plan re-targeted at an existing table.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

use tokio_postgres::Client;

use super::{ExportError, ExportMode, ExportOptions, open_ro, pg};
use crate::pg::ddl::{self, SourceSchema, TablePlan};
use crate::pg::ident::qualified;
use crate::pg::select::{Source, check_foreign_keys};
use crate::pg::source;
use crate::pg::types::{ColumnMapping, ColumnStats, EpochUnit, PgType, map_column};
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
pub(super) async fn retarget(
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
        let stats = crate::task::blocking(move || {
            let conn = open_ro(&path)?;
            source::column_stats(&conn, &table, &columns, &temporal).map_err(|source| {
                ExportError::Sqlite {
                    path: path.clone(),
                    source,
                }
            })
        })
        .await??;
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
