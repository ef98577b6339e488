//! Reading a SQLite database for export: its schema (through the pragmas
//! and `sqlite_schema`) and per-column statistics of the stored values.

use rusqlite::Connection;

use super::ddl::{ForeignKey, SourceIndex, SourceObject, SourceSchema, SourceTable};
use super::expr;
use super::ident::quote;
use super::types::{Affinity, ColumnDecl, ColumnStats, Orm};

/// Reads the schema of an open database.
pub fn read_schema(conn: &Connection) -> rusqlite::Result<SourceSchema> {
    let objects: Vec<(String, String, String, String)> = conn
        .prepare(
            "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema \
             WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let has_seq: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_sequence'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)?;
    let mut tables = vec![];
    let (mut views, mut triggers, mut virtual_tables) = (vec![], vec![], vec![]);
    for (ty, name, _tbl, sql) in &objects {
        match ty.as_str() {
            "table" if sql.to_ascii_uppercase().starts_with("CREATE VIRTUAL") => virtual_tables
                .push(SourceObject {
                    name: name.clone(),
                    sql: sql.clone(),
                }),
            "table" => tables.push(read_table(conn, name, sql, has_seq, &objects)?),
            "view" => views.push(SourceObject {
                name: name.clone(),
                sql: sql.clone(),
            }),
            "trigger" => triggers.push(SourceObject {
                name: name.clone(),
                sql: sql.clone(),
            }),
            _ => {}
        }
    }
    // Shadow tables of virtual tables (e.g. FTS5's x_data) go with them.
    let shadow = |t: &SourceTable| {
        virtual_tables
            .iter()
            .any(|v| t.name.starts_with(&format!("{}_", v.name)))
    };
    tables.retain(|t| !shadow(t));
    let orm = Orm::detect(tables.iter().map(|t| t.name.as_str()));
    Ok(SourceSchema {
        tables,
        views,
        triggers,
        virtual_tables,
        orm,
    })
}

fn read_table(
    conn: &Connection,
    name: &str,
    sql: &str,
    has_seq: bool,
    objects: &[(String, String, String, String)],
) -> rusqlite::Result<SourceTable> {
    let q = quote(name);
    let upper = sql.to_ascii_uppercase();
    let without_rowid = upper.contains("WITHOUT ROWID");
    let checks = expr::checks_of_table(sql);
    let json_checked: Vec<String> = checks
        .iter()
        .flat_map(|c| expr::json_valid_columns(c))
        .collect();
    // (cid, name, type, notnull, dflt, pk, hidden)
    type Info = (i64, String, String, bool, Option<String>, i64, i64);
    let info: Vec<Info> = conn
        .prepare(&format!("PRAGMA table_xinfo({q})"))?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut pk: Vec<(i64, String)> = info
        .iter()
        .filter(|c| c.5 > 0)
        .map(|c| (c.5, c.1.clone()))
        .collect();
    pk.sort();
    let primary_key: Vec<String> = pk.into_iter().map(|(_, n)| n).collect();
    let rowid_alias_col = if !without_rowid && primary_key.len() == 1 {
        info.iter()
            .find(|c| c.1 == primary_key[0] && c.2.eq_ignore_ascii_case("INTEGER"))
            .map(|c| c.1.clone())
    } else {
        None
    };
    let columns = info
        .iter()
        // hidden 1 = virtual-table hidden column; generated columns (2, 3) are exported as values.
        .filter(|c| c.6 != 1)
        .map(|c| ColumnDecl {
            name: c.1.clone(),
            declared: c.2.clone(),
            not_null: c.3,
            rowid_alias: rowid_alias_col.as_deref() == Some(c.1.as_str()),
            json_checked: json_checked.iter().any(|j| j.eq_ignore_ascii_case(&c.1)),
            default: c.4.clone(),
        })
        .collect();
    let autoincrement = if upper.contains("AUTOINCREMENT") {
        let seq: Option<i64> = if has_seq {
            conn.query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .ok()
        } else {
            None
        };
        Some(seq.unwrap_or(0))
    } else {
        None
    };
    // Indexes: 'u' are unique constraints, 'pk' the primary key, 'c' CREATE INDEX.
    let list: Vec<(String, String)> = conn
        .prepare(&format!("PRAGMA index_list({q})"))?
        .query_map([], |r| Ok((r.get(1)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut uniques = vec![];
    let mut indexes = vec![];
    for (ix, origin) in list.iter().rev() {
        match origin.as_str() {
            "u" => {
                let cols: Vec<String> = conn
                    .prepare(&format!("PRAGMA index_info({})", quote(ix)))?
                    .query_map([], |r| r.get::<_, Option<String>>(2))?
                    .filter_map(|c| c.transpose())
                    .collect::<Result<_, _>>()?;
                uniques.push(cols);
            }
            "c" => {
                if let Some(o) = objects.iter().find(|o| o.0 == "index" && &o.1 == ix) {
                    indexes.push(SourceIndex {
                        name: ix.clone(),
                        sql: o.3.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    // foreign_key_list: (id, seq, table, from, to, on_update, on_delete)
    type FkRow = (i64, i64, String, String, Option<String>, String, String);
    let fks: Vec<FkRow> = conn
        .prepare(&format!("PRAGMA foreign_key_list({q})"))?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut foreign_keys: Vec<(i64, ForeignKey)> = vec![];
    for (id, _seq, parent, from, to, on_update, on_delete) in fks {
        match foreign_keys.iter_mut().find(|(i, _)| *i == id) {
            Some((_, fk)) => {
                fk.columns.push(from);
                if let Some(t) = to {
                    fk.parent_columns.push(t);
                }
            }
            None => foreign_keys.push((
                id,
                ForeignKey {
                    columns: vec![from],
                    parent,
                    parent_columns: to.into_iter().collect(),
                    on_update,
                    on_delete,
                },
            )),
        }
    }
    foreign_keys.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    Ok(SourceTable {
        name: name.to_string(),
        sql: sql.to_string(),
        columns,
        without_rowid,
        primary_key,
        autoincrement,
        uniques,
        checks,
        foreign_keys: foreign_keys.into_iter().map(|(_, f)| f).collect(),
        indexes,
    })
}

/// True if mapping this column needs statistics of its values.
pub fn needs_stats(c: &ColumnDecl) -> bool {
    if c.rowid_alias {
        return false;
    }
    let d = c.declared.to_ascii_lowercase();
    let temporal = d.contains("date") || d.contains("time");
    let charn = (d.starts_with("char") || d.starts_with("varchar") || d.starts_with("nchar"))
        && (d.contains("32") || d.contains("36"));
    temporal
        || charn
        || d.starts_with("bool")
        || !matches!(Affinity::of(&c.declared), Affinity::Text | Affinity::Real)
}

const HEX: &str = "[0-9a-fA-F]";

/// Statistics of the given columns (one scan of the table); columns not
/// listed get empty statistics.
pub fn column_stats(
    conn: &Connection,
    table: &str,
    columns: &[ColumnDecl],
    wanted: &[bool],
) -> rusqlite::Result<Vec<ColumnStats>> {
    let mut exprs = vec![];
    let h8 = HEX.repeat(8);
    let h4 = HEX.repeat(4);
    let h12 = HEX.repeat(12);
    let uuid36 = format!("{h8}-{h4}-{h4}-{h4}-{h12}");
    for (c, w) in columns.iter().zip(wanted) {
        if !w {
            continue;
        }
        let q = quote(&c.name);
        exprs.push(format!(
            "sum({q} IS NULL), sum(typeof({q})='integer'), sum(typeof({q})='real'), \
             sum(typeof({q})='text'), sum(typeof({q})='blob'), \
             min(CASE WHEN typeof({q})='integer' THEN {q} END), \
             max(CASE WHEN typeof({q})='integer' THEN {q} END), \
             sum(typeof({q})='integer' AND {q} NOT IN (0, 1)), \
             sum(typeof({q})='text' AND ((length({q}) = 32 AND NOT {q} GLOB '*[^0-9a-fA-F]*') OR {q} GLOB '{uuid36}')), \
             sum(typeof({q})='text' AND length({q}) > 10 AND (substr({q}, -1) IN ('Z', 'z') OR substr({q}, 11) GLOB '*[+-][0-9][0-9]' OR substr({q}, 11) GLOB '*[+-][0-9][0-9]:[0-9][0-9]' OR substr({q}, 11) GLOB '*[+-][0-9][0-9][0-9][0-9]')), \
             max(CASE WHEN typeof({q})='real' THEN abs({q}) END)"
        ));
    }
    let mut out = vec![ColumnStats::default(); columns.len()];
    if exprs.is_empty() {
        return Ok(out);
    }
    let sql = format!("SELECT {} FROM {}", exprs.join(", "), quote(table));
    conn.query_row(&sql, [], |r| {
        let mut k = 0;
        for (i, w) in wanted.iter().enumerate() {
            if !w {
                continue;
            }
            let n = |k: usize| -> rusqlite::Result<u64> {
                Ok(r.get::<_, Option<i64>>(k)?.unwrap_or(0) as u64)
            };
            out[i] = ColumnStats {
                nulls: n(k)?,
                integers: n(k + 1)?,
                reals: n(k + 2)?,
                texts: n(k + 3)?,
                blobs: n(k + 4)?,
                int_min: r.get(k + 5)?,
                int_max: r.get(k + 6)?,
                non_bool_integers: n(k + 7)?,
                uuid_texts: n(k + 8)?,
                tz_texts: n(k + 9)?,
                real_max_abs: r.get::<_, Option<f64>>(k + 10)?.unwrap_or(0.0),
            };
            k += 11;
        }
        Ok(())
    })?;
    Ok(out)
}
