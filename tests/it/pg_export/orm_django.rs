//! A real Django 5.2 project (tests/apps/django_shop) run against both ends
//! of an export: its migrations make the schema on SQLite and on PostgreSQL,
//! its ORM fills SQLite, `litevault export --data-only --truncate` loads the
//! rows into the schema Django made on PostgreSQL, and Django then reads
//! every row back as it reads them from SQLite and writes new ones.
//!
//! Needs python3 with Django 5.2 and psycopg 3, besides PostgreSQL.

use std::collections::BTreeMap;
use std::process::Command;

use super::env::Env;
use super::*;

const INSTALL: &str = "pip install 'django==5.2.*' 'psycopg[binary]'";

/// Products and orders `fill` creates (with as many order lines and
/// product tags again, and a fifth as many customers).
const ROWS: &str = "100";

fn needs_django() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import django, psycopg; assert django.VERSION[:2] == (5, 2), django.get_version()",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "this test needs Django 5.2 and psycopg 3 for python3: `{INSTALL}`\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(err) => {
            panic!("this test needs python3 with Django 5.2 and psycopg 3 (`{INSTALL}`): {err}")
        }
    }
}

/// The Django project in a temporary folder, its `default` database a SQLite
/// file there, its `pg` database the test's PostgreSQL database.
struct Shop {
    app: PathBuf,
    sqlite: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Shop {
    fn new(e: &Env) -> Shop {
        let app = e.copy_app("django_shop");
        let sqlite = e.dir.path().join("shop.sqlite3");
        let (host, db) = (e.socket_host(), e.url.rsplit_once('/').unwrap().1);
        let env = vec![
            ("SHOP_SQLITE", sqlite.to_str().unwrap().to_string()),
            ("SHOP_PG_HOST", host.replace("%2F", "/")),
            ("SHOP_PG_PORT", e.pg.port.to_string()),
            ("SHOP_PG_DB", db.to_string()),
            ("SHOP_PG_USER", "postgres".to_string()),
            ("PYTHONDONTWRITEBYTECODE", "1".to_string()),
            ("PYTHONIOENCODING", "utf-8".to_string()),
        ];
        Shop { app, sqlite, env }
    }

    /// `python3 ARGS` in the app's folder; its stdout.
    fn py(&self, args: &[&str]) -> String {
        let out = Command::new("python3")
            .args(args)
            .current_dir(&self.app)
            .env_remove("DJANGO_SETTINGS_MODULE")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "python3 {args:?} failed:\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// The same project with its `default` database at `sqlite`.
    fn with_sqlite(&self, sqlite: &Path) -> Shop {
        let mut env = self.env.clone();
        for (k, v) in env.iter_mut() {
            if *k == "SHOP_SQLITE" {
                *v = sqlite.to_str().unwrap().to_string();
            }
        }
        Shop {
            app: self.app.clone(),
            sqlite: sqlite.to_path_buf(),
            env,
        }
    }

    fn migrate(&self, db: &str) {
        self.py(&[
            "manage.py",
            "migrate",
            "--database",
            db,
            "--no-input",
            "-v",
            "0",
        ]);
    }

    fn tool(&self, cmd: &str, arg: &str) -> String {
        self.py(&["shop_tool.py", cmd, arg])
    }
}

type Field<'a> = (&'a str, &'a str, &'a str);

/// `shop_tool.py dump` lines (`LABEL PK FIELD VALUE`) by model, key and field.
fn fields(dump: &str) -> BTreeMap<Field<'_>, &str> {
    dump.lines()
        .map(|l| {
            let mut p = l.splitn(4, ' ');
            let mut next = || p.next().unwrap_or("");
            ((next(), next(), next()), next())
        })
        .collect()
}

fn assert_same_rows(sqlite: &str, pg: &str) {
    if sqlite == pg {
        return;
    }
    let (a, b) = (fields(sqlite), fields(pg));
    let mut diff = Vec::new();
    for (&(label, pk, field), v) in &a {
        match b.get(&(label, pk, field)) {
            None => diff.push(format!("- {label} {pk} {field} {v}")),
            Some(w) if w != v => {
                diff.push(format!("- {label} {pk} {field} {v}"));
                diff.push(format!("+ {label} {pk} {field} {w}"));
            }
            Some(_) => {}
        }
    }
    for (&(label, pk, field), w) in &b {
        if !a.contains_key(&(label, pk, field)) {
            diff.push(format!("+ {label} {pk} {field} {w}"));
        }
    }
    if diff.is_empty() {
        panic!("Django reads the same rows from both databases, in another order:\n{pg}");
    }
    let n = diff.len();
    diff.truncate(40);
    panic!(
        "Django reads other rows from PostgreSQL than from SQLite \
         (- as read from SQLite, + as read from PostgreSQL; {n} line(s), the first 40):\n{}",
        diff.join("\n")
    );
}

/// What Django's migrations made on PostgreSQL: constraints (with
/// DEFERRABLE), indexes (with varchar_pattern_ops), columns (type,
/// nullability, identity). A data-only export leaves all of it as it was.
fn schema(e: &Env) -> String {
    e.q(r"SELECT string_agg(x, E'\n' ORDER BY x) FROM (
            SELECT format('%s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid)) AS x
              FROM pg_constraint WHERE connamespace = 'public'::regnamespace
            UNION ALL
            SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
            UNION ALL
            SELECT format('%s.%s %s %s %s', table_name, column_name, data_type, is_nullable, is_identity)
              FROM information_schema.columns WHERE table_schema = 'public'
          ) s")
}

#[test]
#[ignore = "needs PostgreSQL and Django: run scripts/test.sh"]
fn django_reads_back_a_data_only_export_into_its_own_schema_and_writes() {
    needs("PostgreSQL and Django");
    needs_django();
    let e = Env::new();
    let shop = Shop::new(&e);
    shop.migrate("default");
    shop.migrate("pg");
    let before = schema(&e);
    for (what, text) in [
        ("deferrable foreign keys", "DEFERRABLE INITIALLY DEFERRED"),
        ("LIKE indexes of slugs", "(slug varchar_pattern_ops)"),
        (
            "the CHECK of the status choices",
            "shop_order_status_valid CHECK",
        ),
        ("identity keys", "shop_product.id bigint NO YES"),
        ("DurationField", "shop_product.shelf_life interval"),
        ("GenericIPAddressField", "shop_customer.last_ip inet"),
        ("UUIDField", "shop_customer.id uuid"),
        ("JSONField", "shop_product.attrs jsonb"),
    ] {
        assert!(
            before.contains(text),
            "Django's schema has no {what} ({text}):\n{before}"
        );
    }

    shop.tool("fill", ROWS);
    let from_sqlite = shop.tool("dump", "default");
    assert!(from_sqlite.lines().count() > 3000, "{from_sqlite}");

    // migrate filled django_content_type, auth_permission and
    // django_migrations on PostgreSQL too: --truncate replaces those rows.
    let out = e.export_ok(&shop.sqlite, &["--data-only", "--truncate"]);
    // fill stored one price as the REAL 387.28000000000003, which Django
    // reads as Decimal("387.28"); numeric(12,2) gets 387.28, with a note.
    assert!(
        out.lines()
            .any(|l| l.contains("\"shop_product\".\"price\"") && l.contains("ULP")),
        "no float-noise note for shop_product.price:\n{out}"
    );
    assert_eq!(e.q("SELECT price FROM shop_product WHERE id = 1"), "387.28");
    assert_eq!(
        schema(&e),
        before,
        "the data-only export changed Django's schema"
    );
    assert_eq!(
        e.q("SELECT count(*) FROM pg_trigger WHERE tgenabled <> 'O'"),
        "0",
        "triggers (foreign keys among them) left disabled"
    );

    assert_same_rows(&from_sqlite, &shop.tool("dump", "pg"));
    let check = shop.tool("check", "pg");
    assert!(check.contains("check ok"), "{check}");

    // And back, for an app moving onto a volume: PostgreSQL to a new SQLite
    // file, stored as Django stores values on SQLite (UUIDs as 32 hex
    // digits, durations as microseconds, datetimes without an offset), with
    // its deferrable keys and its choices CHECK as IN (...).
    let back = shop.with_sqlite(&e.dir.path().join("back.sqlite3"));
    let out = litevault(&[])
        .arg("import")
        .arg(&e.url)
        .arg(&back.sqlite)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "import failed:\n{stdout}\n{}",
        stderr(&out)
    );
    assert!(stdout.contains("ORM: Django"), "{stdout}");
    assert!(!stdout.contains("NOT CARRIED OVER"), "{stdout}");
    assert_same_rows(&from_sqlite, &back.tool("dump", "default"));
    // Django finds its migrations applied, its keys whole, its CHECK
    // working, and writes new rows (lookups by UUID among them).
    back.py(&["manage.py", "migrate", "--check", "--database", "default"]);
    let check = back.tool("check", "default");
    assert!(check.contains("check ok"), "{check}");
    let wrote = back.tool("write", "default");
    assert!(wrote.contains("write ok"), "{wrote}");
    // New rows through the ORM: identity keys continue after the loaded ones.
    let wrote = shop.tool("write", "pg");
    assert!(wrote.contains("write ok"), "{wrote}");
}
