//! Logical content of a SQLite database: row counts and a digest of every
//! table's rows, to compare a restored database with its source.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};

/// Row counts per table and a SHA-256 over the schema and every row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ContentDigest {
    /// Rows per table.
    pub counts: BTreeMap<String, u64>,
    /// Hex SHA-256 of the schema and all rows, in rowid (or primary key) order.
    pub sha256: String,
}

/// Computes the digest of a database file (opened read-only).
pub fn content_digest(path: &Path) -> rusqlite::Result<ContentDigest> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    digest_conn(&conn)
}

/// Computes the digest over an open connection (one read transaction).
pub fn digest_conn(conn: &rusqlite::Connection) -> rusqlite::Result<ContentDigest> {
    conn.execute_batch("BEGIN")?;
    let r = digest_inner(conn);
    conn.execute_batch("COMMIT")?;
    r
}

/// Computes the digest inside a transaction the caller holds open (e.g. to
/// digest the same snapshot it checksummed).
pub fn digest_in_transaction(conn: &rusqlite::Connection) -> rusqlite::Result<ContentDigest> {
    digest_inner(conn)
}

fn digest_inner(conn: &rusqlite::Connection) -> rusqlite::Result<ContentDigest> {
    let mut h = Sha256::new();
    let mut counts = BTreeMap::new();
    let schema: Vec<(String, String, String)> = conn
        .prepare("SELECT type, name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (ty, name, sql) in &schema {
        h.update(ty.as_bytes());
        h.update([0]);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(sql.as_bytes());
        h.update([0]);
    }
    for (ty, name, sql) in &schema {
        if ty != "table" || sql.to_ascii_uppercase().starts_with("CREATE VIRTUAL") {
            continue;
        }
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let without_rowid = sql.to_ascii_uppercase().contains("WITHOUT ROWID");
        let order = if without_rowid { "" } else { " ORDER BY rowid" };
        let mut stmt = conn.prepare(&format!("SELECT * FROM {quoted}{order}"))?;
        let ncol = stmt.column_count();
        let mut rows = stmt.query([])?;
        let mut n = 0u64;
        h.update(name.as_bytes());
        while let Some(row) = rows.next()? {
            n += 1;
            for i in 0..ncol {
                match row.get_ref(i)? {
                    ValueRef::Null => h.update([0]),
                    ValueRef::Integer(v) => {
                        h.update([1]);
                        h.update(v.to_be_bytes());
                    }
                    ValueRef::Real(v) => {
                        h.update([2]);
                        h.update(v.to_bits().to_be_bytes());
                    }
                    ValueRef::Text(t) => {
                        h.update([3]);
                        h.update((t.len() as u64).to_be_bytes());
                        h.update(t);
                    }
                    ValueRef::Blob(b) => {
                        h.update([4]);
                        h.update((b.len() as u64).to_be_bytes());
                        h.update(b);
                    }
                }
            }
        }
        counts.insert(name.clone(), n);
    }
    Ok(ContentDigest {
        counts,
        sha256: hex::encode(h.finalize()),
    })
}
