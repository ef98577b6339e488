//! The app under the soak: a writer process that commits transactions of
//! every shape, and a ledger of what it committed.
//!
//! Every committed state carries `(seq, digest)` in `hx_meta`: `seq` counts
//! the app's transactions, `digest` is a sum of hashes of every row and
//! schema entry. After each commit the writer appends `seq digest` to the
//! ledger; after a restart it first records the state it finds (a commit
//! whose ledger line was lost to a kill). Row contents carry a nonce of the
//! attempt, so a transaction that was never committed cannot pass for the
//! one that later took its `seq`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};

use crate::rng::Rng;

/// Hash of one row or schema entry.
fn h(kind: &str, id: i64, data: &[u8]) -> u64 {
    let mut s = Sha256::new();
    s.update(kind.as_bytes());
    s.update([0]);
    s.update(id.to_be_bytes());
    s.update(data);
    u64::from_be_bytes(s.finalize()[..8].try_into().unwrap())
}

/// The digest of a database's rows and schema, computed from scratch.
/// Litestream's own bookkeeping tables (`_litestream_seq`,
/// `_litestream_lock`, which it creates in the app's database) are not the
/// app's.
pub fn digest(c: &Connection) -> rusqlite::Result<u64> {
    let mut d = 0u64;
    let mut s = c.prepare("SELECT id, payload FROM t")?;
    let mut rows = s.query([])?;
    while let Some(r) = rows.next()? {
        let p: Vec<u8> = r.get(1)?;
        d = d.wrapping_add(h("t", r.get(0)?, &p));
    }
    let mut s = c.prepare(
        "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_schema
         WHERE name NOT LIKE 'sqlite_%' AND name != 'hx_meta'
           AND name NOT LIKE '\\_litestream\\_%' ESCAPE '\\'",
    )?;
    let entries: Vec<String> = s.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut extra = Vec::new();
    for e in entries {
        d = d.wrapping_add(h("schema", 0, e.as_bytes()));
        if let Some(name) = e.strip_prefix("table x_").and_then(|r| r.split(' ').next()) {
            extra.push(format!("x_{name}"));
        }
    }
    for t in extra {
        let mut s = c.prepare(&format!("SELECT rowid, v FROM \"{t}\""))?;
        let mut rows = s.query([])?;
        while let Some(r) = rows.next()? {
            let v: Vec<u8> = r.get(1)?;
            d = d.wrapping_add(h(&t, r.get(0)?, &v));
        }
    }
    Ok(d)
}

/// `(seq, stored digest)` of a database.
pub fn meta(c: &Connection) -> rusqlite::Result<(i64, u64)> {
    c.query_row("SELECT seq, digest FROM hx_meta WHERE k = 1", [], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
    })
}

/// Creates the app's database (WAL mode) if it does not exist.
pub fn init(db: &Path) -> rusqlite::Result<()> {
    let c = Connection::open(db)?;
    c.pragma_update(None, "journal_mode", "wal")?;
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS hx_meta(k INTEGER PRIMARY KEY, seq INTEGER NOT NULL, digest INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload BLOB NOT NULL);",
    )?;
    let d = digest(&c)?;
    c.execute(
        "INSERT OR IGNORE INTO hx_meta VALUES (1, 0, ?1)",
        [d as i64],
    )?;
    Ok(())
}

/// Appends one ledger line (one `write`, so a kill leaves whole lines).
pub fn record(ledger: &Path, seq: i64, digest: u64) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ledger)?;
    f.write_all(format!("{seq} {digest:016x}\n").as_bytes())
}

/// Reads the ledger: `(seq, digest)` of every committed state seen.
pub fn read_ledger(ledger: &Path) -> std::collections::BTreeMap<i64, Vec<u64>> {
    let mut out: std::collections::BTreeMap<i64, Vec<u64>> = Default::default();
    let text = std::fs::read_to_string(ledger).unwrap_or_default();
    for line in text.lines() {
        let mut it = line.split(' ');
        if let (Some(s), Some(d)) = (it.next(), it.next())
            && let (Ok(s), Ok(d)) = (s.parse(), u64::from_str_radix(d, 16))
        {
            let e = out.entry(s).or_default();
            if !e.contains(&d) {
                e.push(d);
            }
        }
    }
    out
}

pub struct WriterArgs {
    pub db: PathBuf,
    pub ledger: PathBuf,
    pub seed: u64,
    /// Ends the writer cleanly between two transactions when it exists.
    pub stop: PathBuf,
}

/// Runs the app until `stop` appears (or the process is killed).
pub fn run(a: WriterArgs) -> rusqlite::Result<()> {
    let mut c = Connection::open(&a.db)?;
    c.busy_timeout(Duration::from_secs(10))?;
    c.pragma_update(None, "synchronous", "normal")?;
    // Small cache: large transactions spill frames into the WAL before
    // they commit, as they do in apps with big transactions.
    c.pragma_update(None, "cache_size", 200)?;
    let (mut seq, mut d) = meta(&c)?;
    record(&a.ledger, seq, d).expect("ledger");
    let mut rng = Rng::new(a.seed ^ nonce());
    while !a.stop.exists() {
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        d = transaction(&tx, &mut rng, seq, d)?;
        seq += 1;
        tx.commit()?;
        record(&a.ledger, seq, d).expect("ledger");
        maintenance(&c, &mut rng);
        std::thread::sleep(Duration::from_millis(rng.below(15)));
    }
    Ok(())
}

/// A number no other attempt of the app uses: row contents depend on it,
/// so a transaction that was never committed cannot pass for the one that
/// later took its `seq`.
pub fn nonce() -> u64 {
    std::process::id() as u64
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64)
}

/// Records the state the app's database holds now (a commit whose ledger
/// line a kill may have lost). Called before checks after the app died.
pub fn record_current(db: &Path, ledger: &Path) -> rusqlite::Result<()> {
    let c = Connection::open(db)?;
    c.busy_timeout(Duration::from_secs(10))?;
    let (seq, d) = meta(&c)?;
    record(ledger, seq, d).expect("ledger");
    Ok(())
}

/// The body of one app transaction of a random shape, on top of state
/// `(seq, d)`: writes state `seq + 1` into `hx_meta` and returns its digest.
pub fn transaction(
    tx: &rusqlite::Transaction<'_>,
    rng: &mut Rng,
    seq: i64,
    mut d: u64,
) -> rusqlite::Result<u64> {
    let roll = rng.below(100);
    let (lo, hi): (i64, i64) = tx.query_row(
        "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM t",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut schema_changed = false;
    match roll {
        0..=54 => {
            for _ in 0..1 + rng.below(50) {
                let p = rng.blob(50, 450);
                tx.execute("INSERT INTO t(payload) VALUES (?1)", [&p])?;
                d = d.wrapping_add(h("t", tx.last_insert_rowid(), &p));
            }
        }
        55..=74 => {
            let from = lo + rng.below((hi - lo + 1) as u64) as i64;
            let old = pick(tx, from, 1 + rng.below(20) as i64)?;
            for (id, p) in old {
                let n = rng.blob(50, 450);
                tx.execute("UPDATE t SET payload = ?1 WHERE id = ?2", params![n, id])?;
                d = d.wrapping_sub(h("t", id, &p)).wrapping_add(h("t", id, &n));
            }
        }
        75..=89 => {
            let count: i64 = tx.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
            // Old rows go in bulk once the table is large, so the
            // database keeps a steady size and its freelist moves.
            let (from, n) = if count > 12_000 {
                (lo, 2_000)
            } else {
                (
                    lo + rng.below((hi - lo + 1) as u64) as i64,
                    1 + rng.below(30) as i64,
                )
            };
            for (id, p) in pick(tx, from, n)? {
                tx.execute("DELETE FROM t WHERE id = ?1", [id])?;
                d = d.wrapping_sub(h("t", id, &p));
            }
        }
        90..=95 => {
            // A large transaction: ~5 MB, spilled into the WAL.
            for _ in 0..1_200 {
                let p = rng.bytes(4_000);
                tx.execute("INSERT INTO t(payload) VALUES (?1)", [&p])?;
                d = d.wrapping_add(h("t", tx.last_insert_rowid(), &p));
            }
        }
        _ => {
            schema_change(tx, rng, seq)?;
            schema_changed = true;
        }
    }
    if schema_changed {
        d = digest(tx)?;
    }
    tx.execute(
        "UPDATE hx_meta SET seq = ?1, digest = ?2 WHERE k = 1",
        params![seq + 1, d as i64],
    )?;
    Ok(d)
}

/// What the app does between transactions now and then: checkpoints of
/// every mode and VACUUM.
pub fn maintenance(c: &Connection, rng: &mut Rng) {
    match rng.below(100) {
        0..=2 => checkpoint(c, "PASSIVE"),
        3..=4 => checkpoint(c, "RESTART"),
        5..=7 => checkpoint(c, "TRUNCATE"),
        8 => {
            let _ = c.execute_batch("VACUUM");
        }
        _ => {}
    }
}

fn checkpoint(c: &Connection, mode: &str) {
    // Busy while the replicator holds a mark: that is fine.
    let _ = c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()));
}

fn pick(c: &Connection, from: i64, n: i64) -> rusqlite::Result<Vec<(i64, Vec<u8>)>> {
    let mut s = c.prepare("SELECT id, payload FROM t WHERE id >= ?1 ORDER BY id LIMIT ?2")?;
    s.query_map(params![from, n], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// A new table with rows, a dropped one, an index, or a new column.
fn schema_change(c: &Connection, rng: &mut Rng, seq: i64) -> rusqlite::Result<()> {
    let tables: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'x_%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    match rng.below(4) {
        0 if tables.len() > 3 => c.execute_batch(&format!("DROP TABLE \"{}\"", tables[0])),
        0 | 1 => {
            let name = format!("x_{seq:08}");
            c.execute_batch(&format!("CREATE TABLE \"{name}\"(v BLOB)"))?;
            for _ in 0..1 + rng.below(200) {
                c.execute(
                    &format!("INSERT INTO \"{name}\"(v) VALUES (?1)"),
                    [rng.blob(100, 900)],
                )?;
            }
            Ok(())
        }
        2 => {
            let exists: bool = c.query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'i_len'",
                [],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            c.execute_batch(if exists {
                "DROP INDEX i_len"
            } else {
                "CREATE INDEX i_len ON t(length(payload))"
            })
        }
        _ => {
            let cols: i64 =
                c.query_row("SELECT count(*) FROM pragma_table_info('t')", [], |r| {
                    r.get(0)
                })?;
            if cols < 6 {
                c.execute_batch(&format!(
                    "ALTER TABLE t ADD COLUMN c{seq} INTEGER DEFAULT {}",
                    rng.below(1000)
                ))
            } else {
                Ok(())
            }
        }
    }
}
