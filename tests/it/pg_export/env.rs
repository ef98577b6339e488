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

    /// Copies `tests/apps/NAME` into the test's folder (never writing into
    /// the repository; caches and databases left behind), and returns it.
    pub(super) fn copy_app(&self, name: &str) -> PathBuf {
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name();
                let n = name.to_string_lossy();
                if n == "__pycache__" || [".pyc", ".db", ".sqlite3"].iter().any(|x| n.ends_with(x))
                {
                    continue;
                }
                if entry.file_type().unwrap().is_dir() {
                    copy(&entry.path(), &to.join(&name));
                } else {
                    std::fs::copy(entry.path(), to.join(&name)).unwrap();
                }
            }
        }
        let to = self.dir.path().join(name);
        copy(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/apps")
                .join(name),
            &to,
        );
        to
    }

    /// The cluster's Unix-socket folder, percent-encoded as in `url`.
    pub(super) fn socket_host(&self) -> &str {
        // postgres://postgres@<socket folder, percent-encoded>:<port>/<db>
        self.url
            .strip_prefix("postgres://postgres@")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(hostport, _)| Some(hostport.rsplit_once(':')?.0))
            .unwrap_or_else(|| panic!("not a Unix-socket URL: {}", self.url))
    }
}
