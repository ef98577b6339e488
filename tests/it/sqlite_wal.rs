//! The WAL parser against WAL files written by real SQLite (rusqlite, bundled).
//!
//! Each test keeps its connection open while reading the `-wal` file (the last
//! connection to close would checkpoint and delete it) and turns automatic
//! checkpoints off so the WAL only changes when the test says so.

use std::fs;
use std::path::{Path, PathBuf};

use litevault::wal::{
    ScanStop, WalCursor, WalError, WalHeader, WalScan, frame_ends_at, scan_committed,
};
use rusqlite::{Connection, params};

fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    p.into()
}

fn open_wal_db(path: &Path, page_size: u32) -> Connection {
    let conn = Connection::open(path).unwrap();
    // The page size must be chosen before the database file is created.
    conn.execute_batch(&format!("PRAGMA page_size = {page_size};"))
        .unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let pages: i64 = conn
        .query_row("PRAGMA wal_autocheckpoint = 0", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pages, 0);
    conn
}

fn page_count(conn: &Connection) -> u32 {
    conn.query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap()
}

/// Every row of every table, in a canonical order, as comparable text.
fn content(conn: &Connection) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY name")
        .unwrap();
    let schema = stmt
        .query_map([], |r| {
            Ok(format!(
                "{}|{}|{:?}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?
            ))
        })
        .unwrap();
    out.extend(schema.map(Result::unwrap));
    let mut stmt = conn
        .prepare("SELECT id, name, hex(body) FROM t ORDER BY id")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(format!(
                "{}|{}|{}",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?
            ))
        })
        .unwrap();
    out.extend(rows.map(Result::unwrap));
    out
}

fn read_wal(db: &Path) -> (WalHeader, Vec<u8>) {
    let bytes = fs::read(wal_path(db)).unwrap();
    (WalHeader::parse(&bytes).unwrap(), bytes)
}

fn scan_from_start(header: &WalHeader, wal: &[u8]) -> WalScan {
    scan_committed(header, WalCursor::start(header), &wal[32..])
}

/// Apply every committed frame, in order, onto a copy of the main database
/// file and size the result to the last commit's page count.
fn rebuild(db_file: &[u8], header: &WalHeader, wal: &[u8], scan: &WalScan) -> Vec<u8> {
    let page_size = header.page_size as usize;
    let mut db = db_file.to_vec();
    for txn in &scan.txns {
        for f in &txn.frames {
            let at = (f.pgno as usize - 1) * page_size;
            if db.len() < at + page_size {
                db.resize(at + page_size, 0);
            }
            let src = f.page_offset() as usize;
            db[at..at + page_size].copy_from_slice(&wal[src..src + page_size]);
        }
        db.resize(txn.commit as usize * page_size, 0);
    }
    db
}

/// Write `bytes` as a standalone database and check it matches `live`.
fn assert_rebuilt_matches(dir: &Path, name: &str, bytes: &[u8], live: &Connection) {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    let rebuilt = Connection::open(&path).unwrap();
    let ok: String = rebuilt
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    assert_eq!(page_count(&rebuilt), page_count(live));
    let expected = content(live);
    assert!(expected.len() > 1);
    assert_eq!(content(&rebuilt), expected);
}

fn insert_rows(conn: &Connection, from: i64, n: i64, blob: i64) {
    conn.execute(
        "WITH RECURSIVE s(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM s WHERE i < ?1 + ?2 - 1)
         INSERT INTO t(id, name, body) SELECT i, 'row ' || i, randomblob(?3) FROM s",
        params![from, n, blob],
    )
    .unwrap();
}

#[test]
fn scan_of_live_wal_rebuilds_the_database() {
    for page_size in [512u32, 4096, 65536] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live.db");
        let conn = open_wal_db(&db, page_size);

        conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, body BLOB)")
            .unwrap();
        insert_rows(&conn, 1, 1, 10);
        // One transaction spanning many pages (hundreds at 512-byte pages).
        conn.execute_batch("BEGIN").unwrap();
        insert_rows(&conn, 2, 150, 3000);
        conn.execute("UPDATE t SET name = 'first' WHERE id = 1", [])
            .unwrap();
        conn.execute_batch("COMMIT").unwrap();

        // A replicator's first pass: scan what is there, remember where it ended.
        let (header, wal) = read_wal(&db);
        assert_eq!(header.page_size, page_size);
        let first = scan_from_start(&header, &wal);
        assert_eq!(first.txns.len(), 3);
        assert_eq!(first.stop, ScanStop::EndOfData);
        let saved = first.end;
        let big = &first.txns[2];
        assert!(
            big.frames.len() >= 10,
            "{} frames at page size {page_size}",
            big.frames.len()
        );

        conn.execute("UPDATE t SET body = randomblob(100) WHERE id % 7 = 0", [])
            .unwrap();
        conn.execute_batch("CREATE INDEX t_name ON t(name)")
            .unwrap();
        conn.execute("DELETE FROM t WHERE id % 5 = 0", []).unwrap();
        let committed = 6;

        let (header2, wal) = read_wal(&db);
        assert_eq!(header2, header, "no checkpoint ran, same WAL generation");
        let scan = scan_from_start(&header, &wal);
        assert_eq!(scan.txns.len(), committed);
        assert_eq!(scan.txns[..3], first.txns[..]);
        assert_eq!(scan.stop, ScanStop::EndOfData);
        assert_eq!(scan.uncommitted_frames, 0);
        assert_eq!(scan.end.offset, wal.len() as u64);
        assert_eq!(scan.txns.last().unwrap().commit, page_count(&conn));
        for txn in &scan.txns {
            let end = txn.end.offset as usize;
            assert!(frame_ends_at(
                &header,
                txn.end,
                &wal[end - header.frame_size()..end]
            ));
        }

        // Second pass resumes from the saved cursor on a slice of the file.
        let at = saved.offset as usize;
        assert!(frame_ends_at(
            &header,
            saved,
            &wal[at - header.frame_size()..at]
        ));
        let rest = scan_committed(&header, saved, &wal[at..]);
        assert_eq!(rest.txns, scan.txns[3..]);
        assert_eq!(rest.end, scan.end);

        let main = fs::read(&db).unwrap();
        let rebuilt = rebuild(&main, &header, &wal, &scan);
        assert_rebuilt_matches(dir.path(), "rebuilt.db", &rebuilt, &conn);
    }
}

#[test]
fn spilled_frames_of_an_open_transaction_are_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let conn = open_wal_db(&db, 1024);
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, body BLOB)")
        .unwrap();
    // A tiny page cache forces SQLite to spill dirty pages into the WAL
    // before the transaction commits.
    conn.execute_batch("PRAGMA cache_size = 10; BEGIN").unwrap();
    insert_rows(&conn, 1, 400, 900);

    let (header, wal) = read_wal(&db);
    let scan = scan_from_start(&header, &wal);
    assert_eq!(scan.txns.len(), 1, "only CREATE TABLE is committed");
    assert!(scan.uncommitted_frames > 0, "expected spilled frames");
    // When a spilled page is written again in the same transaction SQLite
    // overwrites its frame in place and only recomputes the checksums of the
    // frames from there on at commit, so mid-transaction the tail may not
    // verify at all. Either way none of it is reported as committed.
    assert!(
        matches!(
            scan.stop,
            ScanStop::EndOfData | ScanStop::ChecksumMismatch { .. }
        ),
        "{:?}",
        scan.stop
    );

    conn.execute_batch("COMMIT").unwrap();
    let (header, wal) = read_wal(&db);
    let scan = scan_from_start(&header, &wal);
    assert_eq!(scan.txns.len(), 2);
    assert_eq!(scan.stop, ScanStop::EndOfData);
    assert_eq!(scan.uncommitted_frames, 0);
    assert_eq!(scan.txns[1].commit, page_count(&conn));
    let rebuilt = rebuild(&fs::read(&db).unwrap(), &header, &wal, &scan);
    assert_rebuilt_matches(dir.path(), "rebuilt.db", &rebuilt, &conn);
}

#[test]
fn truncate_checkpoint_starts_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let conn = open_wal_db(&db, 4096);
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, body BLOB)")
        .unwrap();
    insert_rows(&conn, 1, 50, 500);
    let (old, wal) = read_wal(&db);
    let old_scan = scan_from_start(&old, &wal);
    assert_eq!(old_scan.txns.len(), 2);

    let (busy, _, _): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0);
    let empty = fs::read(wal_path(&db)).unwrap();
    assert_eq!(
        WalHeader::parse(&empty).unwrap_err(),
        WalError::TooShort {
            needed: 32,
            found: 0
        }
    );

    insert_rows(&conn, 51, 20, 500);
    conn.execute("UPDATE t SET name = 'x' WHERE id < 10", [])
        .unwrap();
    let (new, wal) = read_wal(&db);
    assert_eq!(new.salt1, old.salt1.wrapping_add(1));
    assert_eq!(new.checkpoint_seq, old.checkpoint_seq.wrapping_add(1));
    assert_ne!(new.checksum, old.checksum);
    let scan = scan_from_start(&new, &wal);
    assert_eq!(scan.txns.len(), 2);
    assert_eq!(scan.stop, ScanStop::EndOfData);
    assert_eq!(scan.txns[1].commit, page_count(&conn));

    // The old saved position does not belong to the new generation.
    let at = old_scan.end.offset as usize;
    let fs_ = new.frame_size();
    assert!(wal.len() < at || !frame_ends_at(&new, old_scan.end, &wal[at - fs_..at]));

    let rebuilt = rebuild(&fs::read(&db).unwrap(), &new, &wal, &scan);
    assert_rebuilt_matches(dir.path(), "rebuilt.db", &rebuilt, &conn);
}

#[test]
fn passive_checkpoint_restart_leaves_stale_frames_that_are_ignored() {
    for page_size in [512u32, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live.db");
        let conn = open_wal_db(&db, page_size);
        conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, body BLOB)")
            .unwrap();
        for i in 0..5 {
            insert_rows(&conn, 1 + i * 40, 40, 800);
        }
        let (old, old_wal) = read_wal(&db);
        let old_scan = scan_from_start(&old, &old_wal);
        assert_eq!(old_scan.txns.len(), 6);

        let (busy, log, done): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((busy, log), (0, done), "everything was checkpointed");

        // The next write restarts the WAL from the top; the file keeps its size
        // and the old generation's later frames stay behind the new ones.
        conn.execute("UPDATE t SET name = 'restarted' WHERE id = 3", [])
            .unwrap();
        let (new, wal) = read_wal(&db);
        assert_eq!(wal.len(), old_wal.len());
        assert_eq!(new.salt1, old.salt1.wrapping_add(1));
        assert_eq!(new.checkpoint_seq, old.checkpoint_seq.wrapping_add(1));

        let scan = scan_from_start(&new, &wal);
        assert_eq!(scan.txns.len(), 1);
        assert_eq!(scan.uncommitted_frames, 0);
        assert!(scan.end.offset < wal.len() as u64);
        assert_eq!(
            scan.stop,
            ScanStop::SaltMismatch {
                offset: scan.end.offset
            }
        );
        assert_eq!(scan.txns[0].commit, page_count(&conn));

        // Saved positions of the old generation are rejected, both where the
        // old frame was overwritten and where it is still on disk.
        let fsz = new.frame_size();
        for txn in &old_scan.txns {
            let at = txn.end.offset as usize;
            assert!(!frame_ends_at(&new, txn.end, &wal[at - fsz..at]));
        }

        let rebuilt = rebuild(&fs::read(&db).unwrap(), &new, &wal, &scan);
        assert_rebuilt_matches(dir.path(), "rebuilt.db", &rebuilt, &conn);
    }
}
