//! TLS to PostgreSQL: a cluster that rejects plain TCP, a certificate for
//! 127.0.0.1 signed by a test CA, and libpq's `sslmode` meanings.

use std::process::Output;

use crate::support::postgres::PgCluster;
use crate::support::*;

fn run(args: &[&str]) -> Output {
    litevault(&[]).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sqlite(dir: &std::path::Path) -> String {
    let db = dir.join("a.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'x');",
        )
        .unwrap();
    db.to_str().unwrap().to_string()
}

#[test]
#[ignore = "needs PostgreSQL and openssl: run scripts/test.sh"]
fn sslmode_require_encrypts_and_plain_tcp_is_refused_by_the_server() {
    let pg = PgCluster::start_tls();
    let url = pg.fresh_db("app");
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(dir.path());
    // The server rejects connections without TLS: this one must fail...
    let o = run(&["export", &db, &format!("{url}?sslmode=disable")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot connect to"), "{}", stderr(&o));
    // ...and these succeed, so they were encrypted.
    let o = run(&["export", &db, &format!("{url}?sslmode=require")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("back.db");
    let o = run(&["import", &url, out.to_str().unwrap()]); // default: prefer
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(pg.psql("app", "SELECT v FROM t"), "x");
}

#[test]
#[ignore = "needs PostgreSQL and openssl: run scripts/test.sh"]
fn sslmode_verify_full_checks_the_certificate() {
    let pg = PgCluster::start_tls();
    let url = pg.fresh_db("app");
    let ca = pg.ca_cert.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(dir.path());
    // The system's roots do not know the test CA.
    let o = run(&["export", &db, &format!("{url}?sslmode=verify-full")]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).to_lowercase().contains("certificate"),
        "{}",
        stderr(&o)
    );
    // With the CA given, the certificate (for 127.0.0.1) verifies.
    let o = run(&[
        "export",
        &db,
        &format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("verified"));
    // A root that did not sign it is refused.
    let other = dir.path().join("other.pem");
    let st = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(dir.path().join("other.key"))
        .arg("-out")
        .arg(&other)
        .args(["-days", "1", "-subj", "/CN=someone else"])
        .output()
        .unwrap();
    assert!(st.status.success());
    let o = run(&[
        "export",
        &db,
        &format!("{url}?sslmode=verify-full&sslrootcert={}", other.display()),
        "--drop",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).to_lowercase().contains("certificate"),
        "{}",
        stderr(&o)
    );
}
