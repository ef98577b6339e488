//! `litevault import` (PostgreSQL -> SQLite) and the round trip SQLite ->
//! PostgreSQL -> SQLite, against a real cluster started by the harness.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::postgres::PgCluster;
use crate::support::*;
use rusqlite::types::Value;

const DB: &str = "app";

fn run(args: &[&str]) -> Output {
    litevault(&[]).args(args).output().unwrap()
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "failed:\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verified"), "{stdout}");
    stdout
}

fn rows(db: &Path, sql: &str) -> Vec<Vec<Value>> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare(sql).unwrap();
    let n = st.column_count();
    st.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn declared(db: &Path, table: &str) -> Vec<(String, String)> {
    rows(
        db,
        &format!("SELECT name, type FROM pragma_table_info('{table}')"),
    )
    .into_iter()
    .map(|r| match (&r[0], &r[1]) {
        (Value::Text(a), Value::Text(b)) => (a.clone(), b.clone()),
        _ => panic!(),
    })
    .collect()
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn import_maps_types_keys_indexes_and_writes_wal() {
    let pg = PgCluster::start();
    let url = pg.fresh_db(DB);
    pg.psql(
        DB,
        "CREATE TYPE mood AS ENUM ('ok', 'sad');
         CREATE TABLE \"Parent Table\" (id bigserial PRIMARY KEY, code varchar(8) NOT NULL UNIQUE, active boolean NOT NULL DEFAULT true, note text DEFAULT 'n/a', ticket serial);
         CREATE VIEW active_parents AS SELECT * FROM \"Parent Table\" WHERE active;
         CREATE TABLE child (
           id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
           parent_id bigint REFERENCES \"Parent Table\"(id) ON DELETE CASCADE,
           at timestamp, atz timestamptz DEFAULT now(), day date, t time,
           price numeric(10,2), ratio real, score double precision, doc jsonb, raw json, u uuid, b bytea,
           tags text[], m mood, span interval,
           CHECK (price >= 0));
         CREATE INDEX child_day ON child (day) WHERE price > 0;
         INSERT INTO \"Parent Table\"(code, active) VALUES ('A', true), ('B', false);
         INSERT INTO child(parent_id, at, atz, day, t, price, ratio, score, doc, raw, u, b, tags, m, span) VALUES
           (1, '2024-02-29 13:45:10.5', '2024-02-29 13:45:10+02', '2024-02-29', '12:30:00', 19.99, 0.5, 1e300,
            '{\"b\": 1, \"a\": [true, null]}', '{\"z\":1,  \"z\":2}', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '\\x00ff', '{x,\"y z\"}', 'sad', '1 day 2 hours'),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("back.db");
    let stdout = ok(run(&["import", &url, out.to_str().unwrap()]));
    assert!(
        stdout.contains("\"child\".\"tags\": text[] stored as JSON text"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"child\".\"m\": mood stored as its text form"),
        "{stdout}"
    );

    assert_eq!(
        declared(&out, "child"),
        [
            ("id", "INTEGER"),
            ("parent_id", "BIGINT"),
            ("at", "DATETIME"),
            ("atz", "TIMESTAMPTZ"),
            ("day", "DATE"),
            ("t", "TIME"),
            ("price", "NUMERIC(10,2)"),
            ("ratio", "REAL"),
            ("score", "DOUBLE PRECISION"),
            ("doc", "JSONB"),
            ("raw", "JSON"),
            ("u", "UUID"),
            ("b", "BLOB"),
            ("tags", "JSON"),
            ("m", "TEXT"),
            ("span", "TEXT"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let r = rows(&out, "SELECT * FROM child ORDER BY id");
    assert_eq!(
        r[0],
        vec![
            Value::Integer(1),
            Value::Integer(1),
            t("2024-02-29 13:45:10.500000"),
            t("2024-02-29 11:45:10+00:00"),
            t("2024-02-29"),
            t("12:30:00"),
            Value::Real(19.99),
            Value::Real(0.5),
            Value::Real(1e300),
            t("{\"a\": [true, null], \"b\": 1}"),
            t("{\"z\":1,  \"z\":2}"),
            t("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            Value::Blob(vec![0, 255]),
            t("[\"x\", \"y z\"]"),
            t("sad"),
            t("1 day 02:00:00"),
        ]
    );
    assert!(r[1][2..].iter().all(|v| *v == Value::Null));
    assert_eq!(
        rows(
            &out,
            "SELECT id, code, active, note FROM \"Parent Table\" ORDER BY id"
        ),
        vec![
            vec![Value::Integer(1), t("A"), Value::Integer(1), t("n/a")],
            vec![Value::Integer(2), t("B"), Value::Integer(0), t("n/a")],
        ]
    );
    let c = rusqlite::Connection::open(&out).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // Keys, uniques, foreign keys, checks, defaults, the partial index.
    c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    assert!(
        c.execute(
            "INSERT INTO \"Parent Table\"(code, ticket) VALUES ('A', 9)",
            []
        )
        .is_err(),
        "unique"
    );
    assert!(
        c.execute("INSERT INTO child(parent_id) VALUES (99)", [])
            .is_err(),
        "foreign key"
    );
    assert!(
        c.execute("INSERT INTO child(price) VALUES (-1)", [])
            .is_err(),
        "check"
    );
    c.execute(
        "INSERT INTO \"Parent Table\"(code, ticket) VALUES ('C', 3)",
        [],
    )
    .unwrap();
    let (id, active): (i64, i64) = c
        .query_row(
            "SELECT id, active FROM \"Parent Table\" WHERE code = 'C'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((id, active), (3, 1), "rowid continues, default true is 1");
    let ix: String = c
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'child_day'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        ix,
        "CREATE INDEX child_day ON \"child\" (day) WHERE (price > (0))"
    );
    c.execute("DELETE FROM \"Parent Table\" WHERE id = 1", [])
        .unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM child WHERE parent_id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 0, "ON DELETE CASCADE");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn children_may_load_before_their_parents() {
    let pg = PgCluster::start();
    let url = pg.fresh_db(DB);
    // "a_child" sorts before "z_parent": loaded first, its keys point to rows
    // not there yet.
    pg.psql(
        DB,
        "CREATE TABLE z_parent (id int PRIMARY KEY);
         CREATE TABLE a_child (id int PRIMARY KEY, parent int NOT NULL REFERENCES z_parent(id));
         INSERT INTO z_parent VALUES (1), (2);
         INSERT INTO a_child VALUES (10, 1), (20, 2);",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("back.db");
    let stdout = ok(run(&["import", &url, out.to_str().unwrap()]));
    assert!(!stdout.contains("foreign_key_check"), "{stdout}");
    assert_eq!(
        rows(&out, "SELECT id, parent FROM a_child ORDER BY id"),
        vec![
            vec![Value::Integer(10), Value::Integer(1)],
            vec![Value::Integer(20), Value::Integer(2)]
        ]
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn import_refuses_an_existing_output() {
    let pg = PgCluster::start();
    let url = pg.fresh_db(DB);
    pg.psql(DB, "CREATE TABLE t (id int PRIMARY KEY)");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.db");
    std::fs::write(&out, b"keep me").unwrap();
    let o = run(&["import", &url, out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
}

/// users <- orders (foreign key), two audit tables.
fn shop_in_pg(pg: &PgCluster) {
    pg.psql(
        DB,
        "CREATE TABLE users (id bigserial PRIMARY KEY, name text);
         CREATE TABLE orders (id int PRIMARY KEY, user_id bigint REFERENCES users(id));
         CREATE TABLE audit_log (id int PRIMARY KEY, what text);
         CREATE TABLE audit_events (id int PRIMARY KEY, what text);
         INSERT INTO users(name) VALUES ('a'), ('b');
         INSERT INTO orders VALUES (1, 1);
         INSERT INTO audit_log VALUES (1, 'x'), (2, 'y');
         INSERT INTO audit_events VALUES (1, 'e');",
    );
}

fn sqlite_tables(db: &Path) -> Vec<Vec<Value>> {
    rows(
        db,
        "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name",
    )
}

/// The table names of the report, sorted.
fn reported(stdout: &str) -> Vec<String> {
    let mut v: Vec<String> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("table "))
        .skip(1)
        .take_while(|l| !l.starts_with("imported "))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn import_table_and_exclude_table_globs() {
    let pg = PgCluster::start();
    let url = pg.fresh_db(DB);
    shop_in_pg(&pg);
    let dir = tempfile::tempdir().unwrap();
    // A schema-qualified glob and a plain one.
    let a = dir.path().join("a.db");
    let stdout = ok(run(&[
        "import",
        &url,
        a.to_str().unwrap(),
        "--table",
        "users",
        "--table",
        "public.audit_*",
    ]));
    assert_eq!(
        sqlite_tables(&a),
        [t("audit_events"), t("audit_log"), t("users")].map(|v| vec![v])
    );
    // Verified: exactly the selected tables.
    assert_eq!(reported(&stdout), ["audit_events", "audit_log", "users"]);
    assert!(stdout.contains("imported 3 table(s), 5 row(s)"), "{stdout}");

    let b = dir.path().join("b.db");
    let stdout = ok(run(&[
        "import",
        &url,
        b.to_str().unwrap(),
        "--exclude-table",
        "audit_[a-z]*",
    ]));
    assert_eq!(
        sqlite_tables(&b),
        [t("orders"), t("users")].map(|v| vec![v])
    );
    assert_eq!(reported(&stdout), ["orders", "users"]);
    assert_eq!(
        rows(
            &b,
            "SELECT \"table\", \"from\" FROM pragma_foreign_key_list('orders')"
        ),
        vec![vec![t("users"), t("user_id")]]
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn import_refuses_a_glob_matching_nothing_and_a_key_into_an_excluded_table() {
    let pg = PgCluster::start();
    let url = pg.fresh_db(DB);
    shop_in_pg(&pg);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.db");

    let o = run(&["import", &url, out.to_str().unwrap(), "--table", "user"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--table \"user\" matches no table in schema \"public\"; the tables are: audit_events, audit_log, orders, users"),
        "{err}"
    );
    assert!(err.contains("psql URL -c '\\dt \"public\".*'"), "{err}");
    assert!(!out.exists());

    let o = run(&[
        "import",
        &url,
        out.to_str().unwrap(),
        "--exclude-table",
        "users",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("table \"orders\" is selected but its foreign key refers to \"users\", which is not: include it (--table users) or exclude \"orders\" as well (--exclude-table orders)"),
        "{err}"
    );
    assert!(!out.exists());
    // Exact names on PostgreSQL: "Users" is not "users".
    let o = run(&["import", &url, out.to_str().unwrap(), "--table", "Users"]);
    assert!(!o.status.success());
    assert!(!out.exists());
}

/// A SQLite database with every kind of value the export maps.
fn varied_db(path: &PathBuf) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        r#"CREATE TABLE "Mixed Case ""T""" (
             id INTEGER PRIMARY KEY, n INTEGER, r REAL, s TEXT, b BLOB, flag BOOLEAN,
             doc JSON, u UUID, at DATETIME, day DATE, price DECIMAL(12,3), code VARCHAR(10) UNIQUE,
             "select" TEXT);
           CREATE TABLE child (id INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER REFERENCES "Mixed Case ""T"""(id), v TEXT NOT NULL DEFAULT 'x');
           CREATE INDEX child_parent ON child(parent);"#,
    )
    .unwrap();
    let mut st = c
        .prepare(r#"INSERT INTO "Mixed Case ""T""" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"#)
        .unwrap();
    // Deterministic pseudo-random values.
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 1..=500i64 {
        let r = next();
        let n = if i % 7 == 0 {
            Value::Null
        } else {
            Value::Integer(r as i64)
        };
        let real = Value::Real(f64::from_bits(r >> 2) % 1e12 * if i % 2 == 0 { -1.0 } else { 1.0 });
        let s: String = (0..(r % 20))
            .map(|k| {
                ['a', 'é', '€', '😀', ' ', '\'', '"', '\\', '\n', '\t']
                    [((r >> (k * 3)) % 10) as usize]
            })
            .collect();
        let blob: Vec<u8> = (0..(r % 9)).map(|k| (r >> (k * 7)) as u8).collect();
        let flag = Value::Integer((r % 2) as i64);
        let doc = format!(
            r#"{{"i": {i}, "s": {}, "l": [1.5, null, true]}}"#,
            serde_json::to_string(&s).unwrap()
        );
        let u = format!("{:032x}", (r as u128) << 64 | next() as u128);
        let at = format!(
            "20{:02}-{:02}-{:02} {:02}:{:02}:{:02}{}",
            r % 30,
            1 + r % 12,
            1 + r % 28,
            r % 24,
            r % 60,
            (r >> 8) % 60,
            if i % 3 == 0 {
                format!(".{:06}", r % 1_000_000)
            } else {
                String::new()
            }
        );
        let day = format!(
            "19{:02}-{:02}-{:02}",
            r % 100,
            1 + r % 12,
            1 + (r >> 4) % 28
        );
        let price = Value::Real(((r % 10_000_000) as f64) / 1000.0);
        st.execute(rusqlite::params![
            i,
            n,
            real,
            s,
            blob,
            flag,
            doc,
            u,
            at,
            day,
            price,
            format!("c{i}"),
            "kw"
        ])
        .unwrap();
    }
    c.execute_batch(
        "INSERT INTO child(parent, v) SELECT id, 'v' || id FROM \"Mixed Case \"\"T\"\"\" WHERE id % 5 = 0;
         INSERT INTO child(parent) VALUES (NULL);",
    )
    .unwrap();
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn round_trip_sqlite_postgres_sqlite_preserves_every_value() {
    let pg = PgCluster::start();
    let url = pg.fresh_db(DB);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    varied_db(&src);
    ok(run(&["export", src.to_str().unwrap(), &url]));
    let back = dir.path().join("back.db");
    ok(run(&["import", &url, back.to_str().unwrap()]));

    let t = r#""Mixed Case ""T""""#;
    let cols = "id, n, r, s, b, flag, price, code, \"select\"";
    // Integers, reals, text, blobs, booleans and decimals: identical values.
    assert_eq!(
        rows(&src, &format!("SELECT {cols} FROM {t} ORDER BY id")),
        rows(&back, &format!("SELECT {cols} FROM {t} ORDER BY id"))
    );
    // JSON: the same document (jsonb normalises spacing and key order).
    let json = |db: &Path| -> Vec<serde_json::Value> {
        rows(db, &format!("SELECT doc FROM {t} ORDER BY id"))
            .into_iter()
            .map(|r| match &r[0] {
                Value::Text(s) => serde_json::from_str(s).unwrap(),
                v => panic!("{v:?}"),
            })
            .collect()
    };
    assert_eq!(json(&src), json(&back));
    // UUIDs: the same 128 bits, now in the canonical form.
    let uuids = |db: &Path| -> Vec<String> {
        rows(db, &format!("SELECT u FROM {t} ORDER BY id"))
            .into_iter()
            .map(|r| match &r[0] {
                Value::Text(s) => s.replace('-', "").to_lowercase(),
                v => panic!("{v:?}"),
            })
            .collect()
    };
    assert_eq!(uuids(&src), uuids(&back));
    // Timestamps and dates: the same instants, written the same way (the
    // fraction as 6 digits when there is one).
    let times = |db: &Path| -> Vec<(String, String)> {
        rows(db, &format!("SELECT at, day FROM {t} ORDER BY id"))
            .into_iter()
            .map(|r| match (&r[0], &r[1]) {
                (Value::Text(a), Value::Text(b)) => (a.clone(), b.clone()),
                v => panic!("{v:?}"),
            })
            .collect()
    };
    assert_eq!(times(&src), times(&back));
    // The child table, its keys and its index.
    assert_eq!(
        rows(&src, "SELECT id, parent, v FROM child ORDER BY id"),
        rows(&back, "SELECT id, parent, v FROM child ORDER BY id")
    );
    let c = rusqlite::Connection::open(&back).unwrap();
    let fk: i64 = c
        .query_row(
            "SELECT count(*) FROM pragma_foreign_key_list('child')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(fk, 1);
    let ix: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'child_parent'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ix, 1);
    // And the round-tripped file exports again, verified, to the same rows.
    let url2 = pg.fresh_db("again");
    ok(run(&["export", back.to_str().unwrap(), &url2]));
    assert_eq!(
        pg.psql(
            DB,
            &format!("SELECT md5(string_agg(x::text, ',' ORDER BY id)) FROM {t} x")
        ),
        pg.psql(
            "again",
            &format!("SELECT md5(string_agg(x::text, ',' ORDER BY id)) FROM {t} x")
        )
    );
}
