//! A real SQLAlchemy 2 + Alembic app (tests/apps/alembic_notes) run against
//! both ends of an export: the same Alembic revisions make the schema on
//! SQLite and on PostgreSQL (native enums, citext, inet, integer[], jsonb,
//! interval, uuid, an identity key), the ORM fills SQLite,
//! `litevault export --data-only --truncate` loads the rows into the schema
//! Alembic made on PostgreSQL, and the ORM then reads every row back as it
//! reads them from SQLite and writes new ones.
//!
//! Needs python3 with SQLAlchemy 2, Alembic and psycopg 3, besides PostgreSQL.

use std::process::Command;

use super::env::Env;
use super::*;

const INSTALL: &str = "pip install 'sqlalchemy>=2' alembic 'psycopg[binary]'";

/// Notes and login events `fill` creates (a fifth as many notebooks, a
/// tenth as many users, about as many note/tag links).
const ROWS: &str = "60";

/// The tables of the app, alembic_version included: the export loads it too.
const TABLES: [&str; 7] = [
    "alembic_version",
    "users",
    "tags",
    "notebooks",
    "notes",
    "note_tags",
    "login_events",
];

fn needs_sqlalchemy() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlalchemy, alembic, psycopg; \
             assert int(sqlalchemy.__version__.split('.')[0]) >= 2, sqlalchemy.__version__",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "this test needs SQLAlchemy 2, Alembic and psycopg 3 for python3: `{INSTALL}`\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(err) => panic!(
            "this test needs python3 with SQLAlchemy 2, Alembic and psycopg 3 (`{INSTALL}`): {err}"
        ),
    }
}

/// The app in a temporary folder, with its SQLite file there.
struct Notes {
    app: PathBuf,
    sqlite: PathBuf,
}

impl Notes {
    fn new(e: &Env) -> Notes {
        Notes {
            app: e.copy_app("alembic_notes"),
            sqlite: e.dir.path().join("notes.db"),
        }
    }

    fn sqlite_url(&self) -> String {
        format!("sqlite:///{}", self.sqlite.display())
    }

    /// SQLAlchemy's URL of database `db` of the cluster: psycopg 3 over the
    /// Unix socket (its folder, percent-encoded, as `host`).
    fn pg_url(e: &Env, db: &str) -> String {
        let host = e.socket_host();
        format!(
            "postgresql+psycopg://postgres@/{db}?host={host}&port={}",
            e.pg.port
        )
    }

    /// `python3 ARGS` in the app's folder, NOTES_DB_URL set to `url`; its stdout.
    fn py(&self, url: &str, args: &[&str]) -> String {
        let out = Command::new("python3")
            .args(args)
            .current_dir(&self.app)
            .env("NOTES_DB_URL", url)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .output()
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "python3 {args:?} (NOTES_DB_URL={url}) failed:\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn upgrade(&self, url: &str) {
        self.py(
            url,
            &["-m", "alembic", "-c", "alembic.ini", "upgrade", "head"],
        );
    }

    fn tool(&self, url: &str, args: &[&str]) -> String {
        let mut a = vec!["notes_tool.py"];
        a.extend_from_slice(args);
        self.py(url, &a)
    }
}

/// Compares two `notes_tool.py dump` outputs row by row and column by column.
fn assert_same_rows(sqlite: &str, pg: &str) {
    if sqlite == pg {
        return;
    }
    let a: serde_json::Value = serde_json::from_str(sqlite).unwrap();
    let b: serde_json::Value = serde_json::from_str(pg).unwrap();
    let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
    let mut diff = Vec::new();
    for (table, rows) in a {
        let (ra, rb) = (
            rows.as_array().unwrap(),
            b.get(table)
                .and_then(|r| r.as_array())
                .cloned()
                .unwrap_or_default(),
        );
        if ra.len() != rb.len() {
            diff.push(format!(
                "{table}: {} row(s) in SQLite, {} in PostgreSQL",
                ra.len(),
                rb.len()
            ));
        }
        for (i, (x, y)) in ra.iter().zip(&rb).enumerate() {
            let (Some(x), Some(y)) = (x.as_object(), y.as_object()) else {
                if x != y {
                    diff.push(format!("{table}[{i}]: {x} / {y}"));
                }
                continue;
            };
            for (col, v) in x {
                let w = y.get(col).unwrap_or(&serde_json::Value::Null);
                if v != w {
                    let id = x
                        .get("id")
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| i.to_string());
                    diff.push(format!("{table} id {id} {col}:\n  - {v}\n  + {w}"));
                }
            }
        }
    }
    let n = diff.len();
    diff.truncate(30);
    panic!(
        "SQLAlchemy reads other rows from PostgreSQL than from SQLite \
         (- as read from SQLite, + as read from PostgreSQL; {n} difference(s), the first 30):\n{}",
        diff.join("\n")
    );
}

/// What Alembic made on PostgreSQL: column types, nullability and
/// defaults, constraints, indexes, enum labels. A data-only export leaves
/// all of it as it was.
fn schema(e: &Env) -> String {
    e.q(r"SELECT string_agg(x, E'\n' ORDER BY x) FROM (
            SELECT format('%s.%s %s %s %s %s', a.attrelid::regclass, a.attname,
                          format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
                          pg_get_expr(d.adbin, d.adrelid)) AS x
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
               AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT format('%s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
              FROM pg_constraint WHERE connamespace = 'public'::regnamespace
            UNION ALL
            SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
            UNION ALL
            SELECT format('enum %s %s', enumtypid::regtype, string_agg(enumlabel, ',' ORDER BY enumsortorder))
              FROM pg_enum GROUP BY enumtypid
          ) s")
}

/// Every row of every table of database `db`, as PostgreSQL prints it.
fn rows_as_text(e: &Env, db: &str) -> String {
    let mut out = String::new();
    for t in TABLES {
        out.push_str(&format!("-- {t}\n"));
        out.push_str(&e.pg.psql(
            db,
            &format!("SET timezone = 'UTC'; SELECT t::text FROM {t} t ORDER BY t::text"),
        ));
        out.push('\n');
    }
    out
}

#[test]
#[ignore = "needs PostgreSQL and SQLAlchemy/Alembic: run scripts/test.sh"]
fn sqlalchemy_reads_back_a_data_only_export_into_alembics_schema_and_writes() {
    needs("PostgreSQL and SQLAlchemy/Alembic");
    needs_sqlalchemy();
    let e = Env::new();
    let notes = Notes::new(&e);
    let (sqlite, pg) = (notes.sqlite_url(), Notes::pg_url(&e, "app"));
    notes.upgrade(&sqlite);
    notes.upgrade(&pg);
    let before = schema(&e);
    for (what, text) in [
        ("a native enum", "notes.status note_status t"),
        (
            "the enum of a Python Enum, by member name",
            "enum user_role READER,WRITER,ADMIN",
        ),
        ("citext", "users.email citext t"),
        ("inet", "users.last_ip inet f"),
        ("integer[]", "notes.related_ids integer[] f"),
        ("jsonb", "notes.meta jsonb f"),
        ("interval", "notes.reading_time interval f"),
        ("uuid", "users.uid uuid t"),
        ("numeric(10,3)", "notes.price numeric(10,3) f"),
        (
            "a serial key",
            "notes.id integer t  nextval('notes_id_seq'::regclass)",
        ),
        ("an identity key", "login_events.id bigint t d"),
        (
            "a composite key",
            "note_tags_pkey PRIMARY KEY (note_id, tag_id)",
        ),
        (
            "a self-referential key",
            "FOREIGN KEY (parent_id) REFERENCES notebooks(id) ON DELETE CASCADE",
        ),
    ] {
        assert!(
            before.contains(text),
            "Alembic's schema has no {what} ({text}):\n{before}"
        );
    }

    notes.tool(&sqlite, &["fill", ROWS]);
    let from_sqlite = notes.tool(&sqlite, &["dump", &sqlite]);
    assert!(from_sqlite.lines().count() > 1000, "{from_sqlite}");

    // `alembic upgrade` wrote alembic_version on PostgreSQL: --truncate
    // replaces its row with SQLite's (the same revision).
    let out = e.export_ok(&notes.sqlite, &["--data-only", "--truncate"]);
    assert!(out.contains("exported 7 table(s)"), "{out}");
    assert_eq!(e.q("SELECT version_num FROM alembic_version"), "0002");
    assert_eq!(
        schema(&e),
        before,
        "the data-only export changed Alembic's schema"
    );
    assert_eq!(
        e.q("SELECT count(*) FROM pg_trigger WHERE tgenabled <> 'O'"),
        "0",
        "triggers (foreign keys among them) left disabled"
    );

    assert_same_rows(&from_sqlite, &notes.tool(&pg, &["dump", &pg]));

    // Byte for byte what the ORM itself writes on PostgreSQL: the same fill
    // into a second database migrated by the same revisions. (The ORM reads
    // an interval of -1 s the same whichever way it is split, and JSON null
    // and SQL NULL both as None: PostgreSQL's text tells them apart.)
    let direct = Notes::pg_url(&e, "direct");
    e.pg.fresh_db("direct");
    notes.upgrade(&direct);
    notes.tool(&direct, &["fill", ROWS]);
    let (exported, written) = (rows_as_text(&e, "app"), rows_as_text(&e, "direct"));
    if exported != written {
        let diff: Vec<String> = exported
            .lines()
            .zip(written.lines())
            .filter(|(a, b)| a != b)
            .take(10)
            .map(|(a, b)| format!("  exported: {a}\n  ORM:      {b}"))
            .collect();
        panic!(
            "the exported rows differ from what SQLAlchemy writes on PostgreSQL:\n{}",
            diff.join("\n")
        );
    }

    // And back: PostgreSQL to a new SQLite file, stored as SQLAlchemy stores
    // values on SQLite (UUIDs as 32 hex digits, intervals as date-times
    // since 1970-01-01, date-times with six fraction digits and no offset).
    let back = e.dir.path().join("back.db");
    let out = litevault(&[])
        .arg("import")
        .arg(&e.url)
        .arg(&back)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "import failed:\n{stdout}\n{}",
        stderr(&out)
    );
    assert!(stdout.contains("ORM: Alembic/SQLAlchemy"), "{stdout}");
    let back_url = format!("sqlite:///{}", back.display());
    assert_same_rows(&from_sqlite, &notes.tool(&back_url, &["dump", &back_url]));
    // Byte for byte as the ORM stored them on SQLite, in the columns whose
    // stored form the ORM decides.
    let stored = |db: &Path| -> String {
        let c = rusqlite::Connection::open(db).unwrap();
        let mut st = c
            .prepare(
                "SELECT quote(id), quote(reading_time), quote(remind_at), quote(updated_at), \
                 quote(published_at) FROM notes ORDER BY id",
            )
            .unwrap();
        st.query_map([], |r| {
            (0..5)
                .map(|k| r.get::<_, String>(k))
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.join("|"))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .join("\n")
    };
    assert_eq!(stored(&back), stored(&notes.sqlite));
    let uids = |db: &Path| -> String {
        let c = rusqlite::Connection::open(db).unwrap();
        c.query_row(
            "SELECT group_concat(uid, ',') FROM (SELECT uid FROM users ORDER BY id)",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(uids(&back), uids(&notes.sqlite));

    // New rows through the ORM: serial and identity keys continue after the
    // loaded ones, and the new note reads back as written.
    let wrote = notes.tool(&pg, &["write", &pg]);
    assert!(wrote.starts_with("wrote users id "), "{wrote}");
}
