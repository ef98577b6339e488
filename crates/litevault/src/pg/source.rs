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
            generated: c.6 == 2 || c.6 == 3,
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

/// Which statistics mapping a column needs (each costs a scan expression).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsKind {
    /// Storage classes and the integer range.
    Basic,
    /// Storage classes and whether integers are all 0/1.
    Bool,
    /// Storage classes, integer and real magnitude, offsets in texts.
    Temporal,
    /// Storage classes and UUID-shaped texts.
    Uuid,
    /// Storage classes and address-shaped texts (Django's char(39)).
    Address,
}

/// The statistics mapping this column needs, if any: the declared type
/// alone decides JSON, UUID, numeric(p,s), text, real and blob columns, and
/// integers outside ORM schemas.
pub fn stats_kind(c: &ColumnDecl, orm: Orm) -> Option<StatsKind> {
    if c.rowid_alias || c.json_checked {
        return None;
    }
    let d = c.declared.trim().to_ascii_lowercase();
    let first = d
        .split(|ch: char| ch == '(' || ch.is_whitespace())
        .next()
        .unwrap_or("");
    if matches!(first, "bool" | "boolean") {
        return Some(StatsKind::Bool);
    }
    if matches!(
        first,
        "json" | "jsonb" | "uuid" | "guid" | "uniqueidentifier"
    ) {
        return None;
    }
    if d.contains("datetime") || d.starts_with("timestamp") || first == "date" || first == "time" {
        return Some(StatsKind::Temporal);
    }
    if orm == Orm::Django && matches!(first, "char" | "character") && d.contains("(39)") {
        return Some(StatsKind::Address);
    }
    if matches!(first, "char" | "character" | "varchar" | "nchar")
        && (d.contains("(32)") || d.contains("(36)"))
    {
        return Some(StatsKind::Uuid);
    }
    match Affinity::of(&c.declared) {
        Affinity::Text | Affinity::Real => None,
        Affinity::Blob if !d.is_empty() => None,
        Affinity::Blob => Some(StatsKind::Basic),
        Affinity::Integer => {
            let small = matches!(first, "smallint" | "int2" | "tinyint");
            (small || orm != Orm::None).then_some(StatsKind::Basic)
        }
        Affinity::Numeric if matches!(first, "numeric" | "decimal" | "money") => None,
        Affinity::Numeric => Some(StatsKind::Basic),
    }
}

const HEX: &str = "[0-9a-fA-F]";

/// Statistics of the given columns (one scan of the table); columns without
/// a kind get empty statistics.
pub fn column_stats(
    conn: &Connection,
    table: &str,
    columns: &[ColumnDecl],
    kinds: &[Option<StatsKind>],
) -> rusqlite::Result<Vec<ColumnStats>> {
    let h8 = HEX.repeat(8);
    let h4 = HEX.repeat(4);
    let h12 = HEX.repeat(12);
    let uuid36 = format!("{h8}-{h4}-{h4}-{h4}-{h12}");
    // Per column: which expressions, in a fixed order of fields.
    let mut exprs: Vec<String> = vec![];
    let mut fields: Vec<(usize, &'static str)> = vec![];
    for (i, (c, k)) in columns.iter().zip(kinds).enumerate() {
        let Some(k) = k else { continue };
        let q = quote(&c.name);
        let mut add = |f: &'static str, e: String| {
            fields.push((i, f));
            exprs.push(e);
        };
        add("nulls", format!("sum({q} IS NULL)"));
        add("integers", format!("sum(typeof({q})='integer')"));
        add("reals", format!("sum(typeof({q})='real')"));
        add("texts", format!("sum(typeof({q})='text')"));
        add("blobs", format!("sum(typeof({q})='blob')"));
        match k {
            StatsKind::Basic | StatsKind::Temporal => {
                add(
                    "int_min",
                    format!("min(CASE WHEN typeof({q})='integer' THEN {q} END)"),
                );
                add(
                    "int_max",
                    format!("max(CASE WHEN typeof({q})='integer' THEN {q} END)"),
                );
            }
            _ => {}
        }
        match k {
            StatsKind::Bool => add(
                "non_bool",
                format!("sum(typeof({q})='integer' AND {q} NOT IN (0, 1))"),
            ),
            StatsKind::Uuid => add(
                "uuid",
                format!(
                    "sum(typeof({q})='text' AND ((length({q}) = 32 AND NOT {q} GLOB '*[^0-9a-fA-F]*') OR {q} GLOB '{uuid36}'))"
                ),
            ),
            StatsKind::Temporal => {
                add(
                    "tz",
                    format!(
                        "sum(typeof({q})='text' AND length({q}) > 10 AND (substr({q}, -1) IN ('Z', 'z') \
                         OR substr({q}, -6, 1) IN ('+', '-') OR substr({q}, -5, 1) IN ('+', '-') \
                         OR (substr({q}, -3, 1) IN ('+', '-') AND substr({q}, -5, 1) <> '-')))"
                    ),
                );
                add(
                    "real_max",
                    format!("max(CASE WHEN typeof({q})='real' THEN abs({q}) END)"),
                );
                let not_temporal = format!(
                    "(typeof({q})='text' AND julianday({q}) IS NULL \
                     AND {q} NOT IN ('infinity', '-infinity'))"
                );
                add("not_temporal", format!("sum({not_temporal})"));
                add(
                    "not_temporal_example",
                    format!("min(CASE WHEN {not_temporal} THEN CAST({q} AS TEXT) END)"),
                );
            }
            StatsKind::Address => add(
                "address",
                format!(
                    "sum(typeof({q})='text' AND NOT {q} GLOB '*[^0-9a-fA-F.:/]*' AND ({q} GLOB '*.*' OR {q} GLOB '*:*'))"
                ),
            ),
            StatsKind::Basic => {}
        }
    }
    let mut out = vec![ColumnStats::default(); columns.len()];
    if exprs.is_empty() {
        return Ok(out);
    }
    let sql = format!("SELECT {} FROM {}", exprs.join(", "), quote(table));
    conn.query_row(&sql, [], |r| {
        for (k, (i, f)) in fields.iter().enumerate() {
            let s = &mut out[*i];
            let n =
                || -> rusqlite::Result<u64> { Ok(r.get::<_, Option<i64>>(k)?.unwrap_or(0) as u64) };
            match *f {
                "nulls" => s.nulls = n()?,
                "integers" => s.integers = n()?,
                "reals" => s.reals = n()?,
                "texts" => s.texts = n()?,
                "blobs" => s.blobs = n()?,
                "int_min" => s.int_min = r.get(k)?,
                "int_max" => s.int_max = r.get(k)?,
                "non_bool" => s.non_bool_integers = n()?,
                "uuid" => s.uuid_texts = n()?,
                "tz" => s.tz_texts = n()?,
                "real_max" => s.real_max_abs = r.get::<_, Option<f64>>(k)?.unwrap_or(0.0),
                "not_temporal" => s.not_temporal = n()?,
                "not_temporal_example" => s.not_temporal_example = r.get(k)?,
                "address" => s.address_texts = n()?,
                // Cannot happen: `fields` holds only the names `add` was
                // given above, each handled here.
                _ => unreachable!("no statistic named {f}"),
            }
        }
        Ok(())
    })?;
    Ok(out)
}
