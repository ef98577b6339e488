//! Loading one table: SQLite rows encoded as binary COPY on a blocking
//! reader, streamed into `COPY ... FROM STDIN`, bad rows stopped on or
//! written to the report file; then keys, indexes and sequences.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::SinkExt;
use tokio_postgres::Client;

use super::verify::read_back;
use super::{ExportError, TableReport, open_ro, pg, pg_message};
use crate::pg::checksum::TableChecksum;
use crate::pg::copy;
use crate::pg::ddl::{self, Problem, TablePlan};
use crate::pg::ident::{literal, qualified, quote};
use crate::pg::value::{self, Conversion, Written};
use crate::task::lock_or_recover;

pub(super) fn table_sizes(path: &Path, plans: &[TablePlan]) -> Vec<u64> {
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

/// Bad rows skipped, one JSON object a line.
pub(super) struct BadRowFile {
    path: PathBuf,
    /// A panic while writing leaves at most a partial line, as a write
    /// error would: the file stays usable for the next rows.
    out: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl BadRowFile {
    pub(super) fn create(path: &Path) -> Result<BadRowFile, ExportError> {
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

    pub(super) fn flush(&self) -> Result<(), ExportError> {
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
pub(super) type TableOutcome = (TableReport, Vec<Problem>, Vec<String>, usize);

struct ReadOutcome {
    sum: TableChecksum,
    source_rows: u64,
    rejected: u64,
    /// Per column: values not written as they are ([`value::Written`]).
    float_noise: Vec<u64>,
    derived: Vec<u64>,
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
        float_noise: vec![0; convs.len()],
        derived: vec![0; convs.len()],
    };
    let mut since_tick = 0u64;
    while let Some(row) = rows.next().map_err(sq)? {
        out.source_rows += 1;
        let start = buf.len();
        copy::put_tuple_start(&mut buf, convs.len());
        let mut failed = None;
        for (i, conv) in convs.iter().enumerate() {
            let v = row.get_ref(nid + i).map_err(sq)?;
            match value::encode_field(&mut buf, conv, v) {
                Ok(Written::Exact) => {}
                Ok(Written::FloatNoise) => out.float_noise[i] += 1,
                Ok(Written::Derived) => out.derived[i] += 1,
                Err(e) => {
                    failed = Some((i, e));
                    break;
                }
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
    // Started now: it fills the channel the COPY below drains.
    let reader = {
        let (path, plans) = (path.to_path_buf(), plans.clone());
        crate::task::start_blocking(move || {
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
    let read = reader.await??;
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
pub(super) async fn load_and_verify(
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
            // The load into an existing table runs in a transaction
            // (see `export`): a refusal must not abort it.
            match client
                .batch_execute(&format!(
                    "SAVEPOINT lv_triggers; ALTER TABLE {qt} DISABLE TRIGGER USER; RELEASE lv_triggers"
                ))
                .await
            {
                Ok(()) => {
                    triggers_disabled = true;
                    notes.push(format!(
                        "{}: its triggers were disabled during the load",
                        quote(&name)
                    ));
                }
                Err(e) => {
                    client
                        .batch_execute("ROLLBACK TO SAVEPOINT lv_triggers")
                        .await
                        .map_err(pg(format!("going on after the triggers of {name:?}")))?;
                    notes.push(format!(
                        "{}: its triggers fired during the load (cannot disable them: {})",
                        quote(&name),
                        pg_message(&e)
                    ))
                }
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
    notes.extend(value_notes(plan, &read));

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
        reset_existing_sequences(client, schema, plan).await?;
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

/// Notes on the values not written as they were: float noise rounded to a
/// numeric's scale, derived columns loaded empty.
fn value_notes(plan: &TablePlan, read: &ReadOutcome) -> Vec<String> {
    let mut notes = vec![];
    let t = &plan.table.name;
    for (k, (c, m)) in plan.table.columns.iter().zip(&plan.columns).enumerate() {
        let col = format!("{}.{}", quote(t), quote(&c.name));
        if let (n @ 1.., ddl_type) = (read.float_noise[k], &m.pg_type) {
            notes.push(format!(
                "{col}: {n} float value(s) within a few ULPs of a {ddl_type} value (SQLite's \
                 arithmetic noise, like 387.28000000000003) were loaded as that value"
            ));
        }
        if m.pg_type == crate::pg::types::PgType::TsVector {
            let hint = if t.starts_with("wagtailsearch") {
                " (Wagtail: python manage.py update_index)"
            } else {
                ""
            };
            notes.push(format!(
                "{col}: tsvector is derived from other columns: loaded empty ({} SQLite value(s) \
                 not copied); rebuild it with the app's own command{hint}",
                read.derived[k]
            ));
        }
    }
    notes
}

/// Serial and identity columns of an existing table continue after the
/// largest value, and the SQLite rowid column after its `AUTOINCREMENT`
/// high-water mark (SQLite never reuses a deleted row's id: nor does the
/// app on PostgreSQL then).
async fn reset_existing_sequences(
    client: &Client,
    schema: &str,
    plan: &TablePlan,
) -> Result<(), ExportError> {
    let table = &plan.table.name;
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
        let high_water = plan
            .table
            .columns
            .iter()
            .find(|c| c.name == col && c.rowid_alias)
            .and(plan.table.autoincrement)
            .unwrap_or(0);
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence({}, {}), GREATEST(COALESCE((SELECT max({}) FROM {qt}), 0), {high_water}) + 1, false)",
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
