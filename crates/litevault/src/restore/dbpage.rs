//! Pages of a live SQLite database, read and written through SQLite itself
//! with the `sqlite_dbpage` virtual table.
//!
//! Reading through SQLite gives a consistent snapshot (the database file
//! overlaid with the WAL, as of one read transaction); writing through it
//! makes a batch of pages one ordinary SQLite transaction, so other
//! connections see the old state or the new one, never a mix.
//!
//! `sqlite_dbpage` exists only when SQLite is compiled with
//! `SQLITE_ENABLE_DBPAGE_VTAB`. This repository's `.cargo/config.toml` passes
//! it to the bundled build (`LIBSQLITE3_FLAGS`); a program that embeds
//! litevault must set the same variable in its own build, and
//! [`ensure_available`] says so when it is missing.

use rusqlite::Connection;

use crate::ltx::{self, DbChecksum};

/// What to do when `sqlite_dbpage` is missing.
pub const DBPAGE_FIX: &str = "build litevault with LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_DBPAGE_VTAB \
     (this repository's .cargo/config.toml sets it; a program embedding litevault must set it in \
     its own .cargo/config.toml [env] section) and rebuild rusqlite's bundled SQLite";

/// Whether this SQLite has the `sqlite_dbpage` virtual table: `Err` with
/// SQLite's message when it does not.
pub fn ensure_available(conn: &Connection) -> Result<(), String> {
    conn.prepare("SELECT pgno FROM sqlite_dbpage WHERE pgno = 1")
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The bytes of page 1 that SQLite itself rewrites whenever a WAL commit
/// includes page 1: the file change counter (24..28), the version-valid-for
/// number (92..96) and the writer's `SQLITE_VERSION_NUMBER` (96..100). A
/// follower's page 1 therefore differs from the primary's in these bytes
/// only; the follower keeps the primary's values (the "stamp") to compare
/// checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Page1Stamp(pub [u8; 12]);

impl Page1Stamp {
    /// The stamp of a page 1.
    pub fn of(page1: &[u8]) -> Page1Stamp {
        let mut s = [0u8; 12];
        if page1.len() >= 100 {
            s[..4].copy_from_slice(&page1[24..28]);
            s[4..].copy_from_slice(&page1[92..100]);
        }
        Page1Stamp(s)
    }

    /// Page 1 with this stamp.
    pub fn apply(&self, page1: &[u8]) -> Vec<u8> {
        let mut p = page1.to_vec();
        if p.len() >= 100 {
            p[24..28].copy_from_slice(&self.0[..4]);
            p[92..100].copy_from_slice(&self.0[4..]);
        }
        p
    }
}

/// Every page of a database, checksummed, as one read saw it.
#[derive(Clone, Debug)]
pub struct PageScan {
    /// The page size.
    pub page_size: u32,
    /// The checksum of every page as stored.
    pub table: DbChecksum,
    /// Page 1 as stored.
    pub page1: Vec<u8>,
}

impl PageScan {
    /// The checksum table with page 1 carrying `stamp` instead of its own.
    pub fn with_stamp(&self, stamp: Page1Stamp) -> DbChecksum {
        let mut t = self.table.clone();
        if !self.page1.is_empty() {
            t.apply_page(1, &stamp.apply(&self.page1));
        }
        t
    }
}

/// Reads every page through `sqlite_dbpage` and checksums it. Run it inside
/// a transaction to pin a snapshot; outside one it runs in its own read
/// transaction.
pub fn scan(conn: &Connection) -> rusqlite::Result<PageScan> {
    let page_size: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let lock = ltx::lock_pgno(page_size);
    let mut table = DbChecksum::new();
    let mut page1 = Vec::new();
    let mut stmt = conn.prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let pgno: u32 = row.get(0)?;
        if pgno == lock {
            continue;
        }
        let data = row.get_ref(1)?.as_blob()?;
        if pgno == 1 {
            page1 = data.to_vec();
        }
        table.apply_page(pgno, data);
    }
    Ok(PageScan {
        page_size,
        table,
        page1,
    })
}

/// The page size and the content checksum (the LTX rolling checksum) of the
/// database as the connection sees it: see [`scan`].
pub fn read_checksum(conn: &Connection) -> rusqlite::Result<(u32, DbChecksum)> {
    let s = scan(conn)?;
    Ok((s.page_size, s.table))
}

/// The number of pages of the database as the connection sees it.
pub fn page_count(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA page_count", [], |r| r.get(0))
}

/// Writes pages into the open write transaction of `conn`.
///
/// Page 1 is held back and written by [`finish`](Self::finish), after every
/// other page: it holds the schema cookie, and a statement that sees a new
/// cookie re-reads the schema, which must then find the new pages.
pub struct PageWriter<'c> {
    insert: rusqlite::CachedStatement<'c>,
    conn: &'c Connection,
    page1: Option<Vec<u8>>,
}

impl<'c> PageWriter<'c> {
    /// Prepares the writes; the caller has run `BEGIN IMMEDIATE`.
    pub fn new(conn: &'c Connection) -> rusqlite::Result<PageWriter<'c>> {
        Ok(PageWriter {
            insert: conn.prepare_cached("INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, ?2)")?,
            conn,
            page1: None,
        })
    }

    /// Replaces (or adds) page `pgno`.
    pub fn write(&mut self, pgno: u32, data: &[u8]) -> rusqlite::Result<()> {
        if pgno == 1 {
            self.page1 = Some(data.to_vec());
            return Ok(());
        }
        self.insert.execute(rusqlite::params![pgno, data])?;
        Ok(())
    }

    /// Writes page 1, then truncates the database to `commit` pages if it
    /// has more. The truncation must be the last write of the transaction:
    /// `sqlite_dbpage` cancels a pending truncation on any later write.
    pub fn finish(mut self, commit: u32) -> rusqlite::Result<()> {
        if let Some(p1) = self.page1.take() {
            self.insert.execute(rusqlite::params![1u32, p1])?;
        }
        drop(self.insert);
        if page_count(self.conn)? > commit {
            // "INSERT INTO sqlite_dbpage(pgno, data) VALUES (N, NULL)" drops
            // page N and every page after it, at commit.
            self.conn.execute(
                "INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, NULL)",
                [commit + 1],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_dbpage_is_compiled_in() {
        let conn = Connection::open_in_memory().unwrap();
        if let Err(e) = ensure_available(&conn) {
            panic!(
                "the bundled SQLite lacks sqlite_dbpage ({e}): {DBPAGE_FIX}. Is .cargo/config.toml present and \
                 did cargo rebuild libsqlite3-sys after it changed?"
            );
        }
    }

    fn db(dir: &std::path::Path, name: &str) -> Connection {
        let c = Connection::open(dir.join(name)).unwrap();
        c.pragma_update(None, "page_size", 1024).unwrap();
        c.pragma_update(None, "journal_mode", "wal").unwrap();
        c
    }

    fn pages(c: &Connection) -> Vec<(u32, Vec<u8>)> {
        c.prepare("SELECT pgno, data FROM sqlite_dbpage")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Copying a database's pages into another, grown or shrunk, through
    /// `PageWriter`, gives the same database: same checksum, same rows.
    #[test]
    fn page_writer_copies_grows_and_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let src = db(dir.path(), "src.db");
        let dst = db(dir.path(), "dst.db");
        src.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        dst.execute_batch("CREATE TABLE t(x);").unwrap();
        for round in 0..3 {
            match round {
                0 => src
                    .execute_batch(
                        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<50)
                         INSERT INTO t SELECT randomblob(900) FROM s;
                         CREATE TABLE u(y); CREATE INDEX ux ON u(y);",
                    )
                    .unwrap(),
                1 => src.execute_batch("INSERT INTO u VALUES (7)").unwrap(),
                _ => src
                    .execute_batch("DELETE FROM t WHERE rowid > 3; VACUUM;")
                    .unwrap(),
            }
            let want = pages(&src);
            let commit = page_count(&src).unwrap();
            dst.execute_batch("BEGIN IMMEDIATE").unwrap();
            let mut w = PageWriter::new(&dst).unwrap();
            for (pgno, data) in &want {
                w.write(*pgno, data).unwrap();
            }
            w.finish(commit).unwrap();
            dst.execute_batch("COMMIT").unwrap();
            let reader = Connection::open(dir.path().join("dst.db")).unwrap();
            // SQLite stamps page 1 of every WAL commit that writes it: only
            // those bytes may differ.
            let mut got = pages(&reader);
            let stamp = Page1Stamp::of(&want[0].1);
            got[0].1 = stamp.apply(&got[0].1);
            assert_eq!(got, want, "round {round}");
            assert_eq!(
                scan(&reader).unwrap().with_stamp(stamp).value(),
                read_checksum(&src).unwrap().1.value()
            );
            let ok: String = reader
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(ok, "ok");
            let n: i64 = reader
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            let m: i64 = src
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, m);
        }
    }
}
