//! `--table` / `--exclude-table` and the summary of PostgreSQL's notices.

use super::*;

/// users <- orders, two audit tables, sessions; users is AUTOINCREMENT with
/// a high-water mark above its largest id.
fn shop(e: &Env) -> PathBuf {
    e.sqlite(
        "shop.db",
        "CREATE TABLE users(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT);
         CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), total REAL);
         CREATE TABLE audit_log(id INTEGER PRIMARY KEY, what TEXT);
         CREATE TABLE audit_events(id INTEGER PRIMARY KEY, what TEXT);
         CREATE TABLE sessions(id INTEGER PRIMARY KEY, token TEXT);
         INSERT INTO users VALUES (1, 'a'), (2, 'b'), (50, 'gone');
         DELETE FROM users WHERE id = 50;
         INSERT INTO orders VALUES (1, 1, 9.5), (2, 2, 1.25);
         INSERT INTO audit_log VALUES (1, 'x'), (2, 'y'), (3, 'z');
         INSERT INTO audit_events VALUES (1, 'e');
         INSERT INTO sessions VALUES (7, 't');
         CREATE TRIGGER sessions_audit AFTER INSERT ON sessions BEGIN INSERT INTO audit_log(what) VALUES ('s'); END;",
    )
}

fn tables_in_pg(e: &Env) -> String {
    e.q("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")
}

/// The table names of the report, in its order.
fn reported(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("table "))
        .skip(1)
        .take_while(|l| !l.starts_with("exported "))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn table_globs_choose_what_is_exported_and_verified() {
    let e = Env::new();
    let db = shop(&e);
    let out = e.export_ok(&db, &["--table", "users", "--table", "audit_*"]);
    assert_eq!(tables_in_pg(&e), "audit_events,audit_log,users");
    // Verification covers exactly the selected tables.
    let mut r = reported(&out);
    r.sort();
    assert_eq!(r, ["audit_events", "audit_log", "users"], "{out}");
    assert!(out.contains("exported 3 table(s), 6 row(s)"), "{out}");
    // The sequence of the selected AUTOINCREMENT table continues after its mark.
    assert_eq!(
        e.q("INSERT INTO users(name) VALUES ('c') RETURNING id"),
        "51"
    );
    // The trigger of a table left out is not attempted.
    assert!(!out.contains("sessions_audit"), "{out}");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn exclude_table_leaves_tables_out_with_data_only_and_truncate() {
    let e = Env::new();
    let db = shop(&e);
    let out = e.export_ok(
        &db,
        &["--exclude-table", "audit_*", "--exclude-table", "s?ssions"],
    );
    assert_eq!(tables_in_pg(&e), "orders,users");
    assert!(out.contains("exported 2 table(s)"), "{out}");

    // Everything, then a reload that leaves the audit tables alone: their
    // PostgreSQL rows stay as they are, the others are emptied and loaded.
    e.q("DROP TABLE orders, users");
    e.export_ok(&db, &[]);
    e.q("INSERT INTO audit_log VALUES (99, 'only in postgres'); UPDATE users SET name = 'changed'");
    let out = e.export_ok(
        &db,
        &["--data-only", "--truncate", "--exclude-table", "audit_*"],
    );
    assert_eq!(e.q("SELECT count(*) FROM audit_log"), "4");
    assert_eq!(
        e.q("SELECT string_agg(name, ',' ORDER BY id) FROM users"),
        "a,b"
    );
    let mut r = reported(&out);
    r.sort();
    assert_eq!(r, ["orders", "sessions", "users"], "{out}");
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn a_table_glob_matching_nothing_is_an_error_naming_it() {
    let e = Env::new();
    let db = shop(&e);
    let out = e.export(&db, &["--table", "users", "--table", "usr*"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--table \"usr*\" matches no table in"),
        "{err}"
    );
    assert!(
        err.contains("the tables are: users, orders, audit_log"),
        "{err}"
    );
    assert!(
        err.contains(&format!("sqlite3 {} .tables", db.display())),
        "{err}"
    );
    // Checked before anything is written.
    assert_eq!(tables_in_pg(&e), "");

    let out = e.export(&db, &["--exclude-table", "[a-"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--exclude-table \"[a-\": unclosed '['"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn a_foreign_key_into_an_excluded_table_is_refused_naming_both() {
    let e = Env::new();
    let db = shop(&e);
    let out = e.export(&db, &["--exclude-table", "users"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "table \"orders\" is selected but its foreign key refers to \"users\", which is not"
        ),
        "{err}"
    );
    assert!(err.contains("--table users"), "{err}");
    assert!(err.contains("--exclude-table orders"), "{err}");
    assert_eq!(tables_in_pg(&e), "");
    // Both left out, or both in: fine.
    e.export_ok(
        &db,
        &["--exclude-table", "users", "--exclude-table", "orders"],
    );
    assert!(!tables_in_pg(&e).contains("users"));
    e.export_ok(&db, &["--table", "orders", "--table", "users"]);
    assert_eq!(
        e.q("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'orders'::regclass"),
        "1"
    );
    // --data-only creates no keys: PostgreSQL's own schema has them.
    let out = e.export_ok(&db, &["--data-only", "--truncate", "--table", "orders"]);
    assert_eq!(reported(&out), ["orders"]);
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn truncate_notices_are_summarised_in_one_line() {
    let e = Env::new();
    let mut sql =
        String::from("CREATE TABLE parent(id INTEGER PRIMARY KEY); INSERT INTO parent VALUES (1);");
    for i in 0..6 {
        sql.push_str(&format!(
            "CREATE TABLE child{i}(id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id));
             INSERT INTO child{i} VALUES (1, 1);"
        ));
    }
    let db = e.sqlite("fk.db", &sql);
    e.export_ok(&db, &[]);
    // At the default log level, where tokio-postgres would log each notice.
    let out = litevault(&[])
        .env("LITEVAULT_LOG", "info")
        .arg("export")
        .arg(&db)
        .arg(&e.url)
        .arg("--truncate")
        .output()
        .unwrap();
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "{stdout}\n{err}");
    let all = format!("{stdout}\n{err}");
    let streamed = all
        .lines()
        .filter(|l| l.contains("truncate cascades to table \""))
        .count();
    assert_eq!(streamed, 0, "notices streamed one by one:\n{all}");
    let summary: Vec<&str> = all
        .lines()
        .filter(|l| l.starts_with("PostgreSQL notices: "))
        .collect();
    assert_eq!(summary.len(), 1, "{all}");
    // TRUNCATE parent CASCADE empties the six children.
    assert!(
        summary[0]
            .starts_with("PostgreSQL notices: 6 × truncate cascades to table … (e.g. \"child"),
        "{all}"
    );
    assert!(
        stdout.trim_end().ends_with(summary[0]),
        "at the end:\n{stdout}"
    );
    for i in 0..6 {
        assert_eq!(e.q(&format!("SELECT count(*) FROM child{i}")), "1");
    }
}

#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn truncate_never_empties_a_table_left_out() {
    let e = Env::new();
    let db = shop(&e);
    e.export_ok(&db, &[]);
    // TRUNCATE users CASCADE would empty orders, which is not selected.
    let out = e.export(&db, &["--truncate", "--table", "users"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "--truncate would also empty \"public\".\"orders\" (its foreign key refers to \"users\""
        ),
        "{err}"
    );
    assert_eq!(e.q("SELECT count(*) FROM orders"), "2");
    assert_eq!(e.q("SELECT count(*) FROM users"), "2");
    let out = e.export_ok(
        &db,
        &["--truncate", "--table", "users", "--table", "orders"],
    );
    let mut r = reported(&out);
    r.sort();
    assert_eq!(r, ["orders", "users"]);
    assert_eq!(e.q("SELECT count(*) FROM orders"), "2");
}
