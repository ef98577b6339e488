//! Writing the SQLite file: tables created, every table streamed from
//! binary COPY into inserts, checksums compared, indexes added, integrity
//! and foreign keys checked, WAL mode switched on.

use std::path::Path;
use std::time::Instant;

use futures::StreamExt;
use rusqlite::types::Value;
use tokio_postgres::Client;

use super::create::{sqlite_create_table, sqlite_index};
use super::{ImportError, ImportReport, ImportTable, ImportTableReport, pg};
use crate::pg::checksum::{TableChecksum, TupleFields};
use crate::pg::copy::TupleReader;
use crate::pg::ddl::Problem;
use crate::pg::ident::{qualified, quote};
use crate::pg::types::{EpochUnit, PgType};
use crate::pg::value::{self, Conversion, decode_to_sqlite};

pub(super) fn write_sqlite(
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
        // Column lists already indexed: a LIKE index (`varchar_pattern_ops`)
        // is a plain index on SQLite, the same as the one beside it.
        let norm = |s: &str| -> String {
            s.chars()
                .filter(|c| !c.is_whitespace() && *c != '"')
                .collect::<String>()
                .to_lowercase()
        };
        let mut indexed: Vec<String> = t
            .uniques
            .iter()
            .chain(std::iter::once(&t.primary_key))
            .map(|cols| norm(&format!("({})", cols.join(","))))
            .collect();
        for (name, def) in &t.indexes {
            let sql = sqlite_index(schema, &t.name, def);
            let cols = sql.find(" (").map(|i| norm(&sql[i..])).unwrap_or_default();
            if def.contains("_pattern_ops") && indexed.contains(&cols) && !sql.contains(" WHERE ") {
                report.warnings.push(format!(
                    "index {}: a LIKE index, the same as another index on SQLite: not created",
                    quote(name)
                ));
                continue;
            }
            indexed.push(cols);
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
