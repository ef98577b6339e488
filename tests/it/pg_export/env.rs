//! One PostgreSQL cluster and the helpers the export tests share.

use super::*;

pub(super) struct Env {
    pub(super) pg: PgCluster,
    pub(super) dir: tempfile::TempDir,
    pub(super) url: String,
}

const DB: &str = "app";

impl Env {
    pub(super) fn new() -> Env {
        let pg = PgCluster::start();
        let url = pg.fresh_db(DB);
        Env {
            pg,
            dir: tempfile::tempdir().unwrap(),
            url,
        }
    }

    /// A SQLite database built from SQL.
    pub(super) fn sqlite(&self, name: &str, sql: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch(sql).unwrap();
        p
    }

    pub(super) fn q(&self, sql: &str) -> String {
        self.pg.psql(DB, sql)
    }

    pub(super) fn col_type(&self, table: &str, col: &str) -> String {
        self.q(&format!(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = '{}'::regclass AND attname = '{}'",
            quote(table).replace('\'', "''"),
            col.replace('\'', "''")
        ))
    }

    pub(super) fn export(&self, db: &Path, extra: &[&str]) -> Output {
        let mut c = litevault(&[]);
        c.arg("export").arg(db).arg(&self.url).args(extra);
        c.output().unwrap()
    }

    pub(super) fn export_ok(&self, db: &Path, extra: &[&str]) -> String {
        let out = self.export(db, extra);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "export failed:\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("verified"), "{stdout}");
        stdout
    }
}
