//! `litevault export` against a real PostgreSQL cluster started by the
//! harness (tests/support/postgres.rs): one test per mapping rule, bad rows,
//! modes, verification, identifiers, `--from` a replica; table selection and
//! the notice summary in pg_export/select.rs.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::postgres::PgCluster;
use crate::support::*;

mod env;
mod orm_alembic;
mod orm_django;
mod orm_types;
mod select;
use env::Env;

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn integers_reals_text_blobs() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, big BIGINT, r REAL, s TEXT, b BLOB, small SMALLINT);
         INSERT INTO t VALUES (1, -9223372036854775808, 9223372036854775807, 0.1, 'héllo', x'00ff10', 7),
                              (2, NULL, 0, -1.5e300, '', x'', NULL);",
    );
    e.export_ok(&db, &[]);
    assert_eq!(e.col_type("t", "n"), "bigint");
    assert_eq!(e.col_type("t", "r"), "double precision");
    assert_eq!(e.col_type("t", "s"), "text");
    assert_eq!(e.col_type("t", "b"), "bytea");
    assert_eq!(e.col_type("t", "small"), "smallint");
    assert_eq!(
        e.q("SELECT n, big, r, s, encode(b, 'hex'), small FROM t WHERE id = 1"),
        "-9223372036854775808|9223372036854775807|0.1|héllo|00ff10|7"
    );
    assert_eq!(
        e.q("SELECT n IS NULL, r, s = '', length(b) FROM t WHERE id = 2"),
        "t|-1.5e+300|t|0"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn generated_columns_are_exported_as_values_with_a_note() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, twice INTEGER GENERATED ALWAYS AS (a * 2) STORED, v TEXT AS (upper('x' || a)));
         INSERT INTO t(id, a) VALUES (1, 21);",
    );
    let out = e.export_ok(&db, &[]);
    assert!(out.contains("\"t\".\"twice\": generated column"), "{out}");
    assert!(out.contains("\"t\".\"v\": generated column"), "{out}");
    assert_eq!(e.q("SELECT a, twice, v FROM t"), "21|42|X21");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn booleans_holding_zero_one_become_boolean() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, ok BOOLEAN NOT NULL DEFAULT 0, flag bool, level BOOLEAN);
         INSERT INTO t VALUES (1, 1, NULL, 0), (2, 0, 1, 2);",
    );
    e.export_ok(&db, &[]);
    assert_eq!(e.col_type("t", "ok"), "boolean");
    assert_eq!(e.col_type("t", "flag"), "boolean");
    // Holds a 2: not a boolean, kept as an integer rather than altered.
    assert_eq!(e.col_type("t", "level"), "bigint");
    assert_eq!(
        e.q("SELECT ok, flag, level FROM t ORDER BY id"),
        "t||0\nf|t|2"
    );
    assert_eq!(e.q("INSERT INTO t(id) VALUES (3) RETURNING ok"), "f");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn numeric_and_decimal_keep_precision_and_scale() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, price DECIMAL(10,2), qty NUMERIC, exact NUMERIC(30,10), big TEXT);
         INSERT INTO t VALUES (1, 19.99, 3, 123.456, '12345678901234567890.0123456789'), (2, 5, 2.5, NULL, NULL);",
    );
    // SQLite's NUMERIC affinity stores numbers as integers or reals; digits
    // beyond a double survive only in text, exported with an override.
    e.export_ok(&db, &["--type", "t.big=numeric(30,10)"]);
    assert_eq!(e.col_type("t", "price"), "numeric(10,2)");
    assert_eq!(e.col_type("t", "qty"), "numeric");
    assert_eq!(
        e.q("SELECT price, qty, exact, big FROM t ORDER BY id"),
        "19.99|3|123.4560000000|12345678901234567890.0123456789\n5.00|2.5||"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn iso_text_dates_and_timestamps() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, d DATE, at DATETIME, tz TIMESTAMP);
         INSERT INTO t VALUES (1, '2024-02-29', '2024-02-29 13:45:10.123456', '2024-02-29T15:45:10+02:00'),
                              (2, NULL, '1999-12-31T23:59:59', '2024-03-01 00:00:00Z');",
    );
    e.export_ok(&db, &[]);
    assert_eq!(e.col_type("t", "d"), "date");
    assert_eq!(e.col_type("t", "at"), "timestamp without time zone");
    // Values carry offsets: timestamptz, converted to UTC.
    assert_eq!(e.col_type("t", "tz"), "timestamp with time zone");
    assert_eq!(
        e.q("SET timezone = 'UTC'; SELECT d, at, tz FROM t ORDER BY id"),
        "2024-02-29|2024-02-29 13:45:10.123456|2024-02-29 13:45:10+00\n|1999-12-31 23:59:59|2024-03-01 00:00:00+00"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn epoch_seconds_become_timestamps_not_years() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, created_at DATETIME, day DATE);
         INSERT INTO t VALUES (1, 1700000000, 1700006400), (2, 0, 86400);",
    );
    e.export_ok(&db, &[]);
    assert_eq!(
        e.q("SELECT created_at, day FROM t ORDER BY id"),
        "2023-11-14 22:13:20|2023-11-15\n1970-01-01 00:00:00|1970-01-02"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn epoch_milliseconds_become_timestamps() {
    let e = Env::new();
    // Prisma's SQLite connector stores DateTime as epoch milliseconds.
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, at TIMESTAMP);
         INSERT INTO t VALUES (1, 1700000000123), (2, 1600000000000);",
    );
    e.export_ok(&db, &[]);
    assert_eq!(
        e.q("SELECT at FROM t ORDER BY id"),
        "2023-11-14 22:13:20.123\n2020-09-13 12:26:40"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn json_text_becomes_jsonb() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        r#"CREATE TABLE t(id INTEGER PRIMARY KEY, doc JSON, meta TEXT CHECK (json_valid(meta)));
           INSERT INTO t VALUES (1, '{"b": 2, "a": [1, 2.5, "x"]}', '{"k": null}'), (2, '[]', '1');"#,
    );
    e.export_ok(&db, &[]);
    assert_eq!(e.col_type("t", "doc"), "jsonb");
    assert_eq!(e.col_type("t", "meta"), "jsonb");
    assert_eq!(
        e.q("SELECT doc->'a'->>1, meta->'k' IS NOT NULL, jsonb_typeof(meta) FROM t ORDER BY id"),
        "2.5|t|object\n|f|number"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn uuid_text_becomes_uuid() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, u UUID, dj char(32), other char(32));
         INSERT INTO t VALUES (1, '550E8400-E29B-41D4-A716-446655440000', '550e8400e29b41d4a716446655440001', 'not a uuid at all, 32 chars....');",
    );
    e.export_ok(&db, &[]);
    assert_eq!(e.col_type("t", "u"), "uuid");
    assert_eq!(e.col_type("t", "dj"), "uuid");
    assert_eq!(e.col_type("t", "other"), "character varying(32)");
    assert_eq!(
        e.q("SELECT u, dj FROM t"),
        "550e8400-e29b-41d4-a716-446655440000|550e8400-e29b-41d4-a716-446655440001"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn varchar_length_is_kept() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, code VARCHAR(5), name NVARCHAR(40), body TEXT);
         INSERT INTO t VALUES (1, 'äbcde', 'x', 'y');",
    );
    e.export_ok(&db, &[]);
    assert_eq!(e.col_type("t", "code"), "character varying(5)");
    assert_eq!(e.col_type("t", "name"), "character varying(40)");
    assert_eq!(e.col_type("t", "body"), "text");
}

/// The schema Django 5's migrations create on SQLite (sqlmigrate output for
/// a model with the usual fields).
const DJANGO: &str = r#"
CREATE TABLE "django_migrations" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "app" varchar(255) NOT NULL, "name" varchar(255) NOT NULL, "applied" datetime NOT NULL);
CREATE TABLE "shop_order" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "ref" char(32) NOT NULL UNIQUE, "paid" bool NOT NULL, "created" datetime NOT NULL, "note" varchar(100) NOT NULL, "qty" integer unsigned NOT NULL CHECK ("qty" >= 0), "data" text NOT NULL CHECK ((JSON_VALID("data") OR "data" IS NULL)), "weight" real NULL, "total" decimal NOT NULL, "day" date NULL);
INSERT INTO django_migrations VALUES (1, 'shop', '0001_initial', '2024-05-01 10:00:00.123456');
INSERT INTO shop_order VALUES (1, '0e2b7fbe5b8a4f7c9d3c1a2b3c4d5e6f', 1, '2024-05-01 10:00:00.123456', 'first', 3, '{"k": [1]}', 1.25, 10.5, '2024-05-01');
INSERT INTO shop_order VALUES (7, '1e2b7fbe5b8a4f7c9d3c1a2b3c4d5e6f', 0, '2024-05-02 11:00:00', 'second', 0, '{}', NULL, 3, NULL);
"#;

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn django_schema_gets_djangos_postgres_types() {
    let e = Env::new();
    let db = e.sqlite("a.db", DJANGO);
    let out = e.export_ok(&db, &[]);
    assert!(out.contains("schema created by: Django"), "{out}");
    let t = "shop_order";
    assert_eq!(e.col_type(t, "paid"), "boolean");
    assert_eq!(e.col_type(t, "created"), "timestamp with time zone");
    assert_eq!(e.col_type(t, "ref"), "uuid");
    assert_eq!(e.col_type(t, "data"), "jsonb");
    assert_eq!(e.col_type(t, "note"), "character varying(100)");
    assert_eq!(e.col_type(t, "qty"), "integer");
    assert_eq!(e.col_type(t, "weight"), "double precision");
    assert_eq!(e.col_type(t, "total"), "numeric");
    assert_eq!(e.col_type(t, "day"), "date");
    // Its CHECK is kept; the JSON_VALID one is the jsonb type's.
    let checks = e.q(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'shop_order'::regclass AND contype = 'c'",
    );
    assert_eq!(checks, "CHECK ((qty >= 0))");
    assert_eq!(
        e.q("SET timezone='UTC'; SELECT ref, paid, created FROM shop_order WHERE id = 1"),
        "0e2b7fbe-5b8a-4f7c-9d3c-1a2b3c4d5e6f|t|2024-05-01 10:00:00.123456+00"
    );
    // The application's next insert gets the next id.
    assert_eq!(
        e.q("INSERT INTO shop_order(ref, paid, created, note, qty, data, total) VALUES (gen_random_uuid(), true, now(), 'x', 1, '{}', 1) RETURNING id"),
        "8"
    );
    let bad = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
        .args(["-X", "-q", &e.url, "-c"])
        .arg("INSERT INTO shop_order(ref, paid, created, note, qty, data, total) VALUES (gen_random_uuid(), true, now(), 'x', -1, '{}', 1)")
        .output()
        .unwrap();
    assert!(!bad.status.success(), "the qty >= 0 check is enforced");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn rails_alembic_prisma_schemas_get_their_postgres_types() {
    let e = Env::new();
    // Rails 7 (sqlite3 adapter), as db/schema.rb's tables are created.
    let rails = e.sqlite(
        "rails.db",
        r#"CREATE TABLE "schema_migrations" ("version" varchar NOT NULL PRIMARY KEY);
           CREATE TABLE "ar_internal_metadata" ("key" varchar NOT NULL PRIMARY KEY, "value" varchar, "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL);
           CREATE TABLE "users" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "email" varchar, "admin" boolean DEFAULT 0, "prefs" json, "created_at" datetime(6) NOT NULL);
           INSERT INTO users VALUES (1, 'a@b.c', 1, '{"x":1}', '2024-01-01 00:00:00.000001');"#,
    );
    e.export_ok(&rails, &[]);
    assert_eq!(e.col_type("users", "id"), "bigint");
    assert_eq!(e.col_type("users", "email"), "character varying");
    assert_eq!(e.col_type("users", "admin"), "boolean");
    assert_eq!(e.col_type("users", "prefs"), "json");
    assert_eq!(
        e.col_type("users", "created_at"),
        "timestamp(6) without time zone"
    );

    // Alembic/SQLAlchemy 2, into another schema of the same database.
    let alembic = e.sqlite(
        "alembic.db",
        r#"CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
           CREATE TABLE item (id INTEGER NOT NULL, name VARCHAR(50) NOT NULL, active BOOLEAN NOT NULL, price NUMERIC(8, 2), created DATETIME, uid CHAR(32), PRIMARY KEY (id));
           INSERT INTO item VALUES (1, 'x', 1, 2.5, '2024-01-01 10:00:00.000000', 'a3bb189e8bf9388899912ace4e6543002');
           UPDATE item SET uid = 'a3bb189e8bf938889991' || '2ace4e654300';"#,
    );
    e.export_ok(&alembic, &["--schema", "alembic"]);
    let t = "alembic.item";
    let ty = |c: &str| {
        e.q(&format!(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '{t}'::regclass AND attname = '{c}'"
        ))
    };
    assert_eq!(ty("id"), "integer");
    assert_eq!(ty("name"), "character varying(50)");
    assert_eq!(ty("active"), "boolean");
    assert_eq!(ty("price"), "numeric(8,2)");
    assert_eq!(ty("created"), "timestamp without time zone");
    assert_eq!(ty("uid"), "uuid");

    // Prisma: DateTime as epoch milliseconds.
    let prisma = e.sqlite(
        "prisma.db",
        r#"CREATE TABLE "_prisma_migrations" ("id" TEXT PRIMARY KEY NOT NULL, "checksum" TEXT NOT NULL, "finished_at" DATETIME, "migration_name" TEXT NOT NULL, "logs" TEXT, "rolled_back_at" DATETIME, "started_at" DATETIME NOT NULL DEFAULT current_timestamp, "applied_steps_count" INTEGER UNSIGNED NOT NULL DEFAULT 0);
           CREATE TABLE "Post" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "title" TEXT NOT NULL, "published" BOOLEAN NOT NULL DEFAULT false, "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, "amount" DECIMAL);
           INSERT INTO "Post" VALUES (1, 'hi', true, 1714557600000, 12.5);"#,
    );
    e.export_ok(&prisma, &["--schema", "prisma"]);
    let ty = |c: &str| {
        e.q(&format!(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'prisma.\"Post\"'::regclass AND attname = '{c}'"
        ))
    };
    assert_eq!(ty("id"), "integer");
    assert_eq!(ty("title"), "text");
    assert_eq!(ty("published"), "boolean");
    assert_eq!(ty("createdAt"), "timestamp(3) without time zone");
    assert_eq!(ty("amount"), "numeric(65,30)");
    assert_eq!(
        e.q("SELECT \"createdAt\" FROM prisma.\"Post\""),
        "2024-05-01 10:00:00"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn sequences_continue_after_max_for_autoincrement_and_plain_integer_keys() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE plain(id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
         INSERT INTO plain VALUES (5, 'a'), (41, 'b');
         INSERT INTO auto VALUES (3, 'a'), (90, 'b');
         DELETE FROM auto WHERE id = 90;",
    );
    e.export_ok(&db, &[]);
    assert_eq!(e.q("INSERT INTO plain(v) VALUES ('c') RETURNING id"), "42");
    // AUTOINCREMENT never reuses 90, like SQLite.
    assert_eq!(e.q("INSERT INTO auto(v) VALUES ('c') RETURNING id"), "91");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn constraints_defaults_indexes_and_foreign_keys() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE parent(id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, n INTEGER DEFAULT 7, at DATETIME DEFAULT (datetime('now')), CHECK (n > 0));
         CREATE TABLE child(a INTEGER, b TEXT, pid INTEGER NOT NULL REFERENCES parent(id) ON DELETE CASCADE, PRIMARY KEY (a, b), UNIQUE (b, pid));
         CREATE UNIQUE INDEX child_lower ON child(lower(b)) WHERE a > 0;
         CREATE INDEX parent_n ON parent(n DESC, code);
         INSERT INTO parent VALUES (1, 'x', 1, '2024-01-01 00:00:00');
         INSERT INTO child VALUES (1, 'B', 1), (-1, 'b', 1);",
    );
    e.export_ok(&db, &[]);
    assert_eq!(
        e.q("SELECT indexdef FROM pg_indexes WHERE tablename IN ('parent', 'child') ORDER BY indexname"),
        [
            "CREATE UNIQUE INDEX child_b_pid_key ON public.child USING btree (b, pid)",
            "CREATE UNIQUE INDEX child_lower ON public.child USING btree (lower(b)) WHERE (a > 0)",
            "CREATE UNIQUE INDEX child_pkey ON public.child USING btree (a, b)",
            "CREATE UNIQUE INDEX parent_code_key ON public.parent USING btree (code)",
            "CREATE INDEX parent_n ON public.parent USING btree (n DESC, code)",
            "CREATE UNIQUE INDEX parent_pkey ON public.parent USING btree (id)",
        ]
        .join("\n")
    );
    assert_eq!(
        e.q("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype IN ('c', 'f') AND conrelid IN ('parent'::regclass, 'child'::regclass) ORDER BY 1"),
        "CHECK ((n > 0))\nFOREIGN KEY (pid) REFERENCES parent(id) ON DELETE CASCADE"
    );
    assert_eq!(
        e.q("INSERT INTO parent(code) VALUES ('y') RETURNING n, at IS NOT NULL"),
        "7|t"
    );
    assert_eq!(e.q("SELECT is_nullable FROM information_schema.columns WHERE table_name='child' AND column_name='pid'"), "NO");
    e.q("DELETE FROM parent WHERE id = 1");
    assert_eq!(e.q("SELECT count(*) FROM child"), "0", "ON DELETE CASCADE");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn views_and_simple_triggers_are_translated_others_reported() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE Users(Id INTEGER PRIMARY KEY, Name TEXT, active BOOLEAN);
         CREATE TABLE Audit(id INTEGER PRIMARY KEY, who TEXT, at DATETIME);
         CREATE VIEW ActiveUsers AS SELECT u.Name AS n FROM Users u WHERE u.active == 1;
         CREATE VIEW odd AS SELECT Name FROM Users WHERE Name GLOB 'a*';
         CREATE TRIGGER stamp AFTER INSERT ON Users WHEN new.Name IS NOT NULL BEGIN
           UPDATE Users SET Name = upper(new.Name) WHERE Id = new.Id;
           INSERT INTO Audit(who, at) VALUES (new.Name, datetime('now'));
         END;
         CREATE TRIGGER guard BEFORE DELETE ON Users BEGIN SELECT RAISE(ABORT, 'no deletes'); END;
         INSERT INTO Users VALUES (1, 'ann', 1), (2, 'bob', 0);",
    );
    let out = e.export_ok(&db, &[]);
    assert_eq!(e.q("SELECT n FROM \"ActiveUsers\""), "ANN");
    assert!(out.contains("NOT CARRIED OVER: view \"odd\""), "{out}");
    assert!(out.contains("GLOB"), "{out}");
    // The loaded rows did not fire the trigger again (Audit has the two
    // rows SQLite's trigger wrote, not four).
    assert_eq!(e.q("SELECT count(*) FROM \"Audit\""), "2");
    // The translated trigger runs in PostgreSQL.
    e.q("INSERT INTO \"Users\"(\"Name\", active) VALUES ('cy', true)");
    assert_eq!(e.q("SELECT \"Name\" FROM \"Users\" WHERE \"Id\" = 3"), "CY");
    assert_eq!(
        e.q("SELECT who FROM \"Audit\" ORDER BY id DESC LIMIT 1"),
        "cy"
    );
    // RAISE() is reported with the trigger's SQL.
    assert!(out.contains("NOT CARRIED OVER: trigger \"guard\""), "{out}");
    assert!(
        out.contains("CREATE TRIGGER guard BEFORE DELETE"),
        "the SQL is shown: {out}"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn awkward_identifiers_are_quoted() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        r#"CREATE TABLE "order" ("select" INTEGER PRIMARY KEY, "My Col" TEXT, "quo""te" TEXT, MixedCase INTEGER, "user" TEXT UNIQUE);
           CREATE INDEX "idx ""odd"" name" ON "order"("My Col", MixedCase);
           CREATE TABLE "Line Item" (id INTEGER PRIMARY KEY, "order" INTEGER REFERENCES "ORDER"("SELECT"), Other INTEGER, FOREIGN KEY (OTHER) REFERENCES "order");
           INSERT INTO "order" VALUES (1, 'a b', 'q"', 5, 'me');
           INSERT INTO "Line Item" VALUES (1, 1, 1);"#,
    );
    e.export_ok(&db, &[]);
    assert_eq!(
        e.q(r#"SELECT "select", "My Col", "quo""te", "MixedCase", "user" FROM "order""#),
        "1|a b|q\"|5|me"
    );
    assert_eq!(
        e.q(r#"SELECT count(*) FROM pg_indexes WHERE indexname = 'idx "odd" name'"#),
        "1"
    );
    assert_eq!(e.q(r#"SELECT "order" FROM "Line Item""#), "1");
    // Foreign keys written in another case than the names they refer to.
    assert_eq!(
        e.q(r#"SELECT string_agg(pg_get_constraintdef(oid), ' | ' ORDER BY pg_get_constraintdef(oid)) FROM pg_constraint WHERE contype = 'f'"#),
        r#"FOREIGN KEY ("Other") REFERENCES "order"("select") | FOREIGN KEY ("order") REFERENCES "order"("select")"#
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn bad_values_stop_the_export_naming_table_row_column_and_value() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, s TEXT);
         INSERT INTO t VALUES (1, 1, 'ok'), (2, 'abc', 'ok'), (3, 3, 'ok');",
    );
    let out = e.export(&db, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("table \"t\""), "{err}");
    assert!(err.contains("rowid 2"), "{err}");
    assert!(err.contains("column \"n\""), "{err}");
    assert!(err.contains("text in a bigint column"), "{err}");
    assert!(err.contains("'abc'"), "{err}");
    assert!(err.contains("--on-bad-row report=FILE"), "{err}");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn without_rowid_tables_are_exported_and_bad_rows_named_by_primary_key() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE kv(k TEXT, n INTEGER, v INTEGER, PRIMARY KEY (k, n)) WITHOUT ROWID;
         INSERT INTO kv VALUES ('a', 1, 10), ('b', 2, 'oops'), ('c', 3, NULL);",
    );
    let out = e.export(&db, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("k 'b', n 2") && err.contains("column \"v\""),
        "{err}"
    );
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE kv SET v = 20 WHERE k = 'b'", [])
        .unwrap();
    // As the error says: rerun with --drop.
    e.export_ok(&db, &["--drop"]);
    assert_eq!(
        e.q("SELECT string_agg(k || n || coalesce(v::text, '-'), ',' ORDER BY k) FROM kv"),
        "a110,b220,c3-"
    );
    assert_eq!(
        e.q("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'p' AND conrelid = 'kv'::regclass"),
        "PRIMARY KEY (k, n)"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn a_missing_database_is_named() {
    let e = Env::new();
    let out = e.export(&e.dir.path().join("nope.db"), &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no SQLite database at"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn invalid_utf8_and_nul_bytes_are_refused() {
    let e = Env::new();
    let db = e.sqlite("a.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT);");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        // Text with an invalid UTF-8 byte and text with a NUL, stored as TEXT.
        c.execute("INSERT INTO t VALUES (1, CAST(x'61ff62' AS TEXT))", [])
            .unwrap();
        c.execute("INSERT INTO t VALUES (2, CAST(x'610062' AS TEXT))", [])
            .unwrap();
        c.execute("INSERT INTO t VALUES (3, 'fine')", []).unwrap();
    }
    let out = e.export(&db, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("rowid 1") && err.contains("invalid UTF-8"),
        "{err}"
    );

    let report = e.dir.path().join("rejects.jsonl");
    let out = e.export(
        &db,
        &[
            "--drop",
            "--on-bad-row",
            &format!("report={}", report.display()),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    assert!(stdout.contains("2 row(s) rejected"), "{stdout}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["row"], "rowid 1");
    assert!(lines[0]["reason"].as_str().unwrap().contains("UTF-8"));
    assert_eq!(lines[0]["value"], "'a\\xffb'");
    assert_eq!(lines[1]["row"], "rowid 2");
    assert!(lines[1]["reason"].as_str().unwrap().contains("NUL"));
    assert_eq!(e.q("SELECT id, s FROM t"), "3|fine");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn rejects_are_reported_and_counted() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, at DATETIME, b BOOLEAN);
         INSERT INTO t VALUES (1, 1, '2024-01-01', 1), (2, 'x', '2024-01-01', 0), (3, 3, 'yesterday', 1), (4, 4, NULL, NULL);",
    );
    let report = e.dir.path().join("bad.jsonl");
    // Without --type, 'yesterday' would make the column text (with a note).
    let stdout = e.export_ok(
        &db,
        &[
            "--on-bad-row",
            &format!("report={}", report.display()),
            "--type",
            "t.at=timestamp",
        ],
    );
    assert!(stdout.contains("2 row(s) rejected"), "{stdout}");
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.contains("\"column\":\"n\"") && text.contains("'x'"),
        "{text}"
    );
    assert!(
        text.contains("\"column\":\"at\"") && text.contains("'yesterday'"),
        "{text}"
    );
    assert_eq!(
        e.q("SELECT string_agg(id::text, ',' ORDER BY id) FROM t"),
        "1,4"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn data_only_loads_into_a_schema_created_by_plain_ddl() {
    let e = Env::new();
    e.q("CREATE TABLE accounts (id serial PRIMARY KEY, email varchar(50) NOT NULL, active boolean NOT NULL DEFAULT true, created timestamptz, seen timestamp, extra text DEFAULT 'x', balance numeric(12,2));");
    // Plain INTEGER columns in SQLite: epoch seconds and epoch milliseconds,
    // told apart by magnitude once the target's types are known.
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE accounts(id INTEGER PRIMARY KEY, email TEXT, active INTEGER, created INTEGER, seen INTEGER, balance REAL);
         INSERT INTO accounts VALUES (3, 'a@x', 1, 1700000000, 1700000000123, 10.25), (9, 'b@x', 0, NULL, NULL, NULL);",
    );
    e.export_ok(&db, &["--data-only"]);
    assert_eq!(
        e.q("SET timezone='UTC'; SELECT id, email, active, created, seen, extra, balance FROM accounts ORDER BY id"),
        "3|a@x|t|2023-11-14 22:13:20+00|2023-11-14 22:13:20.123|x|10.25\n9|b@x|f|||x|"
    );
    // serial continues after the loaded ids.
    assert_eq!(
        e.q("INSERT INTO accounts(email) VALUES ('c') RETURNING id"),
        "10"
    );
    // Not empty any more: refused without --truncate.
    let out = e.export(&db, &["--data-only"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--truncate"), "{}", stderr(&out));
    e.export_ok(&db, &["--data-only", "--truncate"]);
    assert_eq!(e.q("SELECT count(*) FROM accounts"), "2");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn data_only_checks_columns_and_types_before_the_first_row() {
    let e = Env::new();
    e.q("CREATE TABLE t (id bigint PRIMARY KEY, tags point);");
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, tags TEXT); INSERT INTO t VALUES (1, 'a');",
    );
    let out = e.export(&db, &["--data-only"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("t.tags has type point, which litevault cannot write"),
        "{}",
        stderr(&out)
    );
    assert_eq!(e.q("SELECT count(*) FROM t"), "0");

    // Created with unquoted names, PostgreSQL folds them to lower case.
    e.q("DROP TABLE t; CREATE TABLE t (id bigint PRIMARY KEY, Tags_X text);");
    let db2 = e.sqlite(
        "b.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, Tags_X TEXT); INSERT INTO t VALUES (1, 'a');",
    );
    let out = e.export(&db2, &["--data-only"]);
    assert!(
        stderr(&out).contains("it has \"tags_x\": names differ in case"),
        "{}",
        stderr(&out)
    );
    e.q("DROP TABLE t; CREATE TABLE t (id bigint PRIMARY KEY);");
    let out = e.export(&db, &["--data-only"]);
    assert!(
        stderr(&out).contains("column \"tags\" of table \"t\" does not exist"),
        "{}",
        stderr(&out)
    );

    e.q("DROP TABLE t;");
    let out = e.export(&db, &["--data-only"]);
    assert!(
        stderr(&out).contains("table \"t\" does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn existing_tables_need_drop_or_truncate() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');
         CREATE TABLE log(id INTEGER PRIMARY KEY, what TEXT);
         CREATE VIEW tv AS SELECT v FROM t;
         CREATE TRIGGER t_log AFTER INSERT ON t BEGIN INSERT INTO log(what) VALUES (new.v); END;",
    );
    let first = e.export_ok(&db, &[]);
    assert!(!first.contains("NOT CARRIED OVER"), "{first}");
    let out = e.export(&db, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already exists in PostgreSQL and holds rows"),
        "{}",
        stderr(&out)
    );
    // Re-runs replace the view and the trigger, and the trigger does not
    // fire while rows are copied back in.
    for flag in ["--truncate", "--drop"] {
        let again = e.export_ok(&db, &[flag]);
        assert!(!again.contains("NOT CARRIED OVER"), "{flag}: {again}");
        assert_eq!(e.q("SELECT count(*) FROM t"), "1");
        assert_eq!(e.q("SELECT count(*) FROM log"), "0");
        assert_eq!(e.q("SELECT v FROM tv"), "a");
    }
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn parallel_jobs_load_many_tables() {
    let e = Env::new();
    let mut sql = String::new();
    for t in 0..6 {
        sql.push_str(&format!(
            "CREATE TABLE t{t}(id INTEGER PRIMARY KEY, v TEXT, n REAL);
             WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {})
             INSERT INTO t{t} SELECT i, printf('row %d of t{t}', i), i / 3.0 FROM c;",
            2000 + t * 3000
        ));
    }
    let db = e.sqlite("a.db", &sql);
    let out = e.export_ok(&db, &["--jobs", "4"]);
    for t in 0..6 {
        let n = 2000 + t * 3000;
        assert_eq!(e.q(&format!("SELECT count(*) FROM t{t}")), n.to_string());
        assert!(out.contains(&format!("t{t}")), "{out}");
    }
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn type_overrides_by_flag_and_file() {
    let e = Env::new();
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, stamp INTEGER, label TEXT, code TEXT);
         INSERT INTO t VALUES (1, 1700000000, 'x', '550e8400-e29b-41d4-a716-446655440000');",
    );
    let file = e.dir.path().join("types.conf");
    std::fs::write(&file, "# overrides\nt.code = uuid\n").unwrap();
    e.export_ok(
        &db,
        &[
            "--type",
            "t.stamp=timestamptz",
            "--type",
            "t.label=varchar(10)",
            "--types-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(e.col_type("t", "stamp"), "timestamp with time zone");
    assert_eq!(e.col_type("t", "label"), "character varying(10)");
    assert_eq!(e.col_type("t", "code"), "uuid");
    assert_eq!(
        e.q("SET timezone='UTC'; SELECT stamp FROM t"),
        "2023-11-14 22:13:20+00"
    );
    let out = e.export(&db, &["--drop", "--type", "t.nope=text"]);
    assert!(
        stderr(&out).contains("no such table and column"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn verification_fails_when_postgres_holds_something_else() {
    let e = Env::new();
    // The table belongs to another role, so its trigger cannot be disabled:
    // it rewrites every row as it is copied, PostgreSQL holds something else
    // than what was sent, the checksums differ, exit 1.
    e.q("CREATE TABLE t (id bigint PRIMARY KEY, v text);
         CREATE FUNCTION up() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.v := upper(NEW.v); RETURN NEW; END $$;
         CREATE TRIGGER up BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION up();
         CREATE ROLE loader LOGIN;
         GRANT SELECT, INSERT ON t TO loader;");
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
    );
    let url = e.url.replace("postgres://postgres@", "postgres://loader@");
    let out = litevault(&[])
        .args(["export", db.to_str().unwrap(), &url, "--data-only"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("its triggers fired during the load"),
        "{stdout}"
    );
    assert!(stdout.contains("MISMATCH"), "{stdout}");
    assert!(
        stderr(&out).contains("verification failed for t"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn timestamp_precision_is_checked_not_rounded() {
    let e = Env::new();
    e.q("CREATE TABLE t (id bigint PRIMARY KEY, at timestamp(0));");
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, at DATETIME);
         INSERT INTO t VALUES (1, '2024-01-01 10:00:00'), (2, '2024-01-01 10:00:00.6');",
    );
    let out = e.export(&db, &["--data-only"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("rowid 2") && err.contains("would round it"),
        "{err}"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn triggers_of_an_existing_table_do_not_fire_during_the_load() {
    let e = Env::new();
    e.q("CREATE TABLE t (id bigint PRIMARY KEY, v text);
         CREATE FUNCTION up() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.v := upper(NEW.v); RETURN NEW; END $$;
         CREATE TRIGGER up BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION up();");
    let db = e.sqlite(
        "a.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
    );
    let out = e.export_ok(&db, &["--data-only"]);
    assert!(
        out.contains("\"t\": its triggers were disabled during the load"),
        "{out}"
    );
    assert_eq!(e.q("SELECT string_agg(v, ',' ORDER BY id) FROM t"), "a,b");
    // Enabled again afterwards.
    assert_eq!(e.q("INSERT INTO t VALUES (3, 'c') RETURNING v"), "C");
}

#[test]
fn schema_only_prints_the_ddl() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, at DATETIME, ok BOOLEAN);")
        .unwrap();
    let out = litevault(&[])
        .args(["export", db.to_str().unwrap(), "--schema-only"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("CREATE TABLE \"public\".\"t\""), "{s}");
    assert!(
        s.contains("\"id\" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL"),
        "{s}"
    );
    assert!(s.contains("\"at\" timestamp"), "{s}");
    assert!(s.contains("\"ok\" boolean"), "{s}");
    assert!(s.contains("ADD PRIMARY KEY (\"id\")"), "{s}");
    assert!(s.contains("setval(pg_get_serial_sequence"), "{s}");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn export_from_a_file_replica_at_a_txid() {
    let e = Env::new();
    let db = e.dir.path().join("live.db");
    let replica_dir = e.dir.path().join("replica");
    let url = file_url(&replica_dir);
    let txid_after_first = block_on(async {
        let c = create_db(&db, 4096);
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one');",
        )
        .unwrap();
        let replica = litevault::Replica::open(&url).unwrap();
        let rep = litevault::Replicator::open(&db, replica, litevault::ReplicateOptions::default())
            .await
            .unwrap();
        let first = rep.sync_all().await.unwrap();
        c.execute("INSERT INTO t VALUES (2, 'two')", []).unwrap();
        rep.sync_all().await.unwrap();
        first
    });
    let hex = txid_after_first.to_string();
    // Latest state.
    let out = litevault(&[])
        .args(["export", "--from", &url, &e.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        e.q("SELECT string_agg(v, ',' ORDER BY id) FROM t"),
        "one,two"
    );
    // An earlier point.
    let out = litevault(&[])
        .args(["export", "--from", &url, "--txid", &hex, "--drop", &e.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "txid {hex}: {}", stderr(&out));
    assert_eq!(e.q("SELECT string_agg(v, ',' ORDER BY id) FROM t"), "one");
}

#[test]
#[ignore = "needs PostgreSQL and the moto S3 server: run scripts/test.sh"]
fn export_from_an_s3_replica_at_a_timestamp() {
    let e = Env::new();
    let s3 = S3Server::start();
    let bucket = s3.bucket("pgexport");
    let db = e.dir.path().join("live.db");
    let stamp = block_on(async {
        let c = create_db(&db, 4096);
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one');",
        )
        .unwrap();
        let rep = litevault::Replicator::open(
            &db,
            s3.replica(&bucket, "app"),
            litevault::ReplicateOptions::default(),
        )
        .await
        .unwrap();
        rep.sync_all().await.unwrap();
        let stamp = timestamp_between_writes();
        c.execute("INSERT INTO t VALUES (2, 'two')", []).unwrap();
        rep.sync_all().await.unwrap();
        stamp
    });
    let out = litevault(&s3.env())
        .args([
            "export",
            "--from",
            &s3.url(&bucket, "app"),
            "--timestamp",
            &stamp,
            &e.url,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified"));
    assert_eq!(e.q("SELECT string_agg(v, ',' ORDER BY id) FROM t"), "one");
}
