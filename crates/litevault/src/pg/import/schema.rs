//! Reading one PostgreSQL schema's catalog: tables, columns (their SQLite
//! type, read expression and default), keys, checks and indexes.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::create::{any_array_to_in, rowid_pk, strip_casts};
use super::{ImportError, pg};
use crate::pg::ident::quote;
use crate::pg::types::{Orm, PgType};

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
    /// `DEFERRABLE INITIALLY DEFERRED` (Django's keys, on both databases).
    pub deferred: bool,
}

/// Chooses the SQLite declared type and the read expression of a column
/// (pure). `category` is `pg_type.typcategory`. With an ORM known, values
/// are stored as that ORM stores them on SQLite (Django and SQLAlchemy:
/// UUIDs as 32 hex digits; Django: durations as integer microseconds,
/// datetimes as UTC text without an offset; SQLAlchemy: durations as a
/// date-time since 1970-01-01).
pub fn map_pg_column(
    name: &str,
    type_name: &str,
    category: &str,
    orm: Orm,
) -> (PgType, String, String, Option<String>) {
    let q = quote(name);
    let parsed = PgType::parse(type_name);
    match (orm, &parsed) {
        (Orm::Django | Orm::Alembic, Some(PgType::Uuid)) => {
            return (
                PgType::Text,
                format!("replace({q}::text, '-', '')"),
                "char(32)".into(),
                None,
            );
        }
        (Orm::Django, Some(PgType::Interval)) => {
            return (
                PgType::BigInt,
                format!("(extract(epoch FROM {q}) * 1000000)::bigint"),
                "bigint".into(),
                None,
            );
        }
        (Orm::Alembic, Some(PgType::Interval)) => {
            return (
                PgType::Text,
                format!("to_char(timestamp '1970-01-01' + {q}, 'YYYY-MM-DD HH24:MI:SS.US')"),
                "DATETIME".into(),
                None,
            );
        }
        (Orm::Django, Some(PgType::TimestampTz(p))) => {
            // The same instant, printed without the offset as Django does.
            return (PgType::Timestamp(*p), q, "datetime".into(), None);
        }
        (Orm::Alembic, Some(PgType::Timestamp(_) | PgType::TimestampTz(_))) => {
            // SQLAlchemy's SQLite format: always six fraction digits, no offset.
            let utc = if matches!(parsed, Some(PgType::TimestampTz(_))) {
                format!("{q} AT TIME ZONE 'UTC'")
            } else {
                q.clone()
            };
            return (
                PgType::Text,
                format!("to_char({utc}, 'YYYY-MM-DD HH24:MI:SS.US')"),
                "DATETIME".into(),
                None,
            );
        }
        (Orm::Alembic, Some(PgType::Time)) => {
            return (
                PgType::Text,
                format!("to_char(date '2000-01-01' + {q}, 'HH24:MI:SS.US')"),
                "TIME".into(),
                None,
            );
        }
        (Orm::Django, Some(PgType::Inet)) => {
            return (
                PgType::Text,
                format!("CASE WHEN {q} IS NOT NULL THEN format('%s', {q}) END"),
                "char(39)".into(),
                None,
            );
        }
        _ => {}
    }
    // Intervals, addresses, enums, arrays and text search types are read
    // as text (or JSON) on the server, below.
    let native = PgType::parse(type_name).filter(|t| {
        !matches!(
            t,
            PgType::Interval
                | PgType::Inet
                | PgType::Cidr
                | PgType::MacAddr
                | PgType::MacAddr8
                | PgType::Labelled { .. }
                | PgType::Array { .. }
                | PgType::TsVector
        )
    });
    match native {
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
                // Filtered out above: read as text.
                _ => "TEXT".into(),
            };
            (t, q, decl, None)
        }
        // The type's output form (an inet's `::text` would add `/32`).
        None if matches!(category, "E" | "S" | "I" | "T" | "D") => (
            PgType::Text,
            format!("CASE WHEN {q} IS NOT NULL THEN format('%s', {q}) END"),
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

/// The tables of `schema`, warnings about what does not carry over, and the
/// ORM whose migrations made the schema.
pub(super) async fn read_catalog(
    client: &Client,
    schema: &str,
) -> Result<(Vec<ImportTable>, Vec<String>, Orm), ImportError> {
    let tables = client
        .query(
            "SELECT c.oid, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname",
            &[&schema],
        )
        .await
        .map_err(pg("listing tables"))?;
    let table_names: Vec<String> = tables.iter().map(|t| t.get(1)).collect();
    let orm = Orm::detect(table_names.iter().map(String::as_str));
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
            let (read_as, select, sqlite_type, warn) = map_pg_column(&cname, &tname, &cat, orm);
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
                        pg_get_constraintdef(oid), conname::text, condeferred \
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
                                deferred: c.get(8),
                            });
                        }
                        _ => warnings.push(format!(
                            "{}: foreign key {def} refers to a table outside schema {schema:?}; not imported",
                            quote(&t.name)
                        )),
                    }
                }
                "c" => t.checks.push(any_array_to_in(&strip_casts(&def))),
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
    Ok((out.into_iter().map(|(_, t)| t).collect(), warnings, orm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types() {
        assert_eq!(map_pg_column("a", "boolean", "B", Orm::None).2, "BOOLEAN");
        assert_eq!(
            map_pg_column("a", "timestamp with time zone", "D", Orm::None).2,
            "TIMESTAMPTZ"
        );
        assert_eq!(
            map_pg_column("a", "character varying(5)", "S", Orm::None).2,
            "VARCHAR(5)"
        );
        let (t, sel, decl, warn) = map_pg_column("a", "integer[]", "A", Orm::None);
        assert_eq!(
            (t, sel.as_str(), decl.as_str()),
            (PgType::Text, "to_jsonb(\"a\")::text", "JSON")
        );
        assert!(warn.unwrap().contains("JSON"));
        let (_, sel, decl, _) = map_pg_column("a", "mood", "E", Orm::None);
        assert_eq!(
            (sel.as_str(), decl.as_str()),
            (
                "CASE WHEN \"a\" IS NOT NULL THEN format('%s', \"a\") END",
                "TEXT"
            )
        );
        // As the ORM stores them on SQLite.
        let m = |t: &str, orm| {
            let (_, sel, decl, _) = map_pg_column("a", t, "X", orm);
            (sel, decl)
        };
        assert_eq!(
            m("uuid", Orm::Django),
            ("replace(\"a\"::text, '-', '')".into(), "char(32)".into())
        );
        assert_eq!(m("uuid", Orm::Rails).1, "UUID");
        assert_eq!(m("interval", Orm::Django).1, "bigint");
        assert!(
            m("interval", Orm::Alembic)
                .0
                .contains("timestamp '1970-01-01' + \"a\"")
        );
        assert_eq!(m("timestamp with time zone", Orm::Django).1, "datetime");
        assert!(
            m("timestamp with time zone", Orm::Alembic)
                .0
                .contains("AT TIME ZONE 'UTC'")
        );
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
}
