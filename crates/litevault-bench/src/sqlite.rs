//! The SQLite backends: plain SQLite in a directory (local disk, or a
//! FUSE-mounted bucket) and SQLite replicated by an embedded [`Vault`].
//!
//! Every SQLite connection is tuned the same way: `synchronous=NORMAL` in
//! WAL mode (`FULL` in DELETE mode, SQLite's default there),
//! `foreign_keys=ON`, `temp_store=MEMORY`, a 5 s busy timeout (as
//! [`litevault::vault`] does) and the run's `cache_size`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::backend::{Backend, Setup};
use super::results::{BackendInfo, LoadInfo};
use super::run::BenchError;
use super::workload::{
    Conversation, ConversationSummary, DatasetSpec, Message, NewMessage, Session, User,
};
use litevault::replica::{Replica, S3Credentials};
use litevault::replicate::ReplicateOptions;
use litevault::vault::{Vault, VaultOptions};

/// SQLite's journal mode for a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalMode {
    /// Rollback journal (`-journal` file), no shared memory.
    Delete,
    /// Write-ahead log (`-wal` and `-shm` files).
    Wal,
}

impl JournalMode {
    fn pragma(self) -> &'static str {
        match self {
            JournalMode::Delete => "DELETE",
            JournalMode::Wal => "WAL",
        }
    }
    fn synchronous(self) -> &'static str {
        match self {
            JournalMode::Delete => "FULL",
            JournalMode::Wal => "NORMAL",
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE users(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    avatar_url TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE conversations(
    id INTEGER PRIMARY KEY,
    owner_id INTEGER NOT NULL REFERENCES users(id),
    title TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE participants(
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE TABLE messages(
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    author_id INTEGER NOT NULL REFERENCES users(id),
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

const INDEXES: &str = "
CREATE INDEX conversations_owner ON conversations(owner_id, id);
CREATE INDEX messages_conversation ON messages(conversation_id, id);
ANALYZE;
";

const Q_MESSAGE: &str =
    "SELECT id, conversation_id, author_id, body, created_at FROM messages WHERE id = ?1";
const Q_MESSAGES_FROM: &str = "SELECT id, conversation_id, author_id, body, created_at FROM messages WHERE id >= ?1 ORDER BY id LIMIT ?2";
const Q_USER: &str = "SELECT id, name, email, avatar_url, created_at FROM users WHERE id = ?1";
const Q_CONVERSATION: &str =
    "SELECT id, owner_id, title, created_at FROM conversations WHERE id = ?1";
const Q_PARTICIPANTS: &str =
    "SELECT user_id FROM participants WHERE conversation_id = ?1 ORDER BY user_id";
const Q_RECENT: &str = "SELECT id, conversation_id, author_id, body, created_at FROM messages WHERE conversation_id = ?1 ORDER BY id DESC LIMIT ?2";
const Q_COUNT: &str = "SELECT count(*) FROM messages WHERE conversation_id = ?1";
const Q_CONVERSATIONS_OF: &str =
    "SELECT id, title FROM conversations WHERE owner_id = ?1 ORDER BY id DESC LIMIT ?2";
const Q_INSERT: &str = "INSERT INTO messages(conversation_id, author_id, body, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING id";

fn sqlite_err(what: &'static str) -> impl FnOnce(rusqlite::Error) -> BenchError {
    move |source| BenchError::Sqlite { what, source }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The database file of a dataset in `dir`.
pub fn db_file(dir: &Path, dataset: &str) -> PathBuf {
    dir.join(format!("litevault-bench-{dataset}.db"))
}

/// Removes a database and its companions (`-wal`, `-shm`, `-journal`, the
/// replicator's state folder). Missing files are fine.
fn remove_db(path: &Path) -> Result<(), BenchError> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p)(e)),
        }
    }
    let state = litevault::db::state::StateDir::for_db(path);
    match std::fs::remove_dir_all(state.path()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(state.path())(e)),
    }
}

/// Creates the schema and writes the dataset into a new database at
/// `path` (replacing any), in one transaction, indexes built after the
/// rows; leaves it in `mode`. Returns the database size in bytes.
pub fn build_sqlite(path: &Path, spec: &DatasetSpec, mode: JournalMode) -> Result<u64, BenchError> {
    remove_db(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let e = sqlite_err("loading the dataset");
    let mut c = Connection::open(path).map_err(sqlite_err("creating the database"))?;
    // A fresh file: no journal worth its cost while loading; fsync once at
    // the end instead.
    c.pragma_update(None, "synchronous", "OFF").map_err(e)?;
    c.pragma_update(None, "cache_size", -65536)
        .map_err(sqlite_err("loading the dataset"))?;
    {
        let tx = c.transaction().map_err(sqlite_err("loading the dataset"))?;
        tx.execute_batch(SCHEMA)
            .map_err(sqlite_err("creating the schema"))?;
        {
            let e = || sqlite_err("loading the dataset");
            let mut st = tx
                .prepare("INSERT INTO users VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(e())?;
            for id in 1..=spec.users as i64 {
                let u = spec.user(id);
                st.execute(params![u.id, u.name, u.email, u.avatar_url, u.created_at])
                    .map_err(e())?;
            }
            let mut st = tx
                .prepare("INSERT INTO conversations VALUES (?1, ?2, ?3, ?4)")
                .map_err(e())?;
            let mut sp = tx
                .prepare("INSERT INTO participants VALUES (?1, ?2)")
                .map_err(e())?;
            for id in 1..=spec.conversations as i64 {
                let cv = spec.conversation(id);
                st.execute(params![cv.id, cv.owner_id, cv.title, cv.created_at])
                    .map_err(e())?;
                for u in spec.participants(id) {
                    sp.execute(params![id, u]).map_err(e())?;
                }
            }
            let mut st = tx
                .prepare("INSERT INTO messages VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(e())?;
            for id in 1..=spec.messages as i64 {
                let m = spec.message(id);
                st.execute(params![
                    m.id,
                    m.conversation_id,
                    m.author_id,
                    m.body,
                    m.created_at
                ])
                .map_err(e())?;
            }
        }
        tx.execute_batch(INDEXES)
            .map_err(sqlite_err("creating the indexes"))?;
        tx.commit().map_err(sqlite_err("loading the dataset"))?;
    }
    let mode_now: String = c
        .query_row(&format!("PRAGMA journal_mode={}", mode.pragma()), [], |r| {
            r.get(0)
        })
        .map_err(sqlite_err("setting the journal mode"))?;
    if !mode_now.eq_ignore_ascii_case(mode.pragma()) {
        return Err(BenchError::JournalMode {
            path: path.to_path_buf(),
            wanted: mode.pragma(),
            got: mode_now,
        });
    }
    let bytes = db_bytes(&c)?;
    drop(c);
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))?;
    Ok(bytes)
}

fn db_bytes(c: &Connection) -> Result<u64, BenchError> {
    c.query_row(
        "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|b| b as u64)
    .map_err(sqlite_err("reading the database size"))
}

/// Applies the per-connection settings every backend shares.
fn tune(c: &Connection, mode: JournalMode, cache_kib: u64) -> rusqlite::Result<()> {
    c.busy_timeout(Duration::from_secs(5))?;
    c.pragma_update(None, "synchronous", mode.synchronous())?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    c.pragma_update(None, "temp_store", "MEMORY")?;
    c.pragma_update(None, "cache_size", -(cache_kib as i64))?;
    Ok(())
}

fn open_tuned(path: &Path, mode: JournalMode, cache_kib: u64) -> Result<Connection, BenchError> {
    let c = Connection::open(path).map_err(sqlite_err("opening the database"))?;
    tune(&c, mode, cache_kib).map_err(sqlite_err("configuring the connection"))?;
    Ok(c)
}

/// Where a database is built before use.
#[derive(Clone, Debug)]
enum Placement {
    /// Built in place.
    InPlace,
    /// Built in a local scratch directory, then copied into place with one
    /// sequential write (a FUSE-mounted bucket would otherwise upload the
    /// file once per transaction of the load).
    CopiedFrom(PathBuf),
}

/// Plain SQLite in a directory: local disk ([`SqliteBackend::local`]) or a
/// mounted bucket ([`SqliteBackend::on_mount`]).
pub struct SqliteBackend {
    info: BackendInfo,
    dir: PathBuf,
    mode: JournalMode,
    placement: Placement,
    cache_kib: u64,
    loaded: Option<PathBuf>,
    /// Set when WAL works only in exclusive locking mode (no shared memory
    /// on the file system): every session shares this one connection.
    shared: Option<Arc<Mutex<Connection>>>,
}

impl SqliteBackend {
    /// SQLite in WAL mode on local disk, in `dir` (files
    /// `litevault-bench-<dataset>.db`, removed at close).
    pub fn local(dir: impl Into<PathBuf>) -> SqliteBackend {
        let dir = dir.into();
        SqliteBackend {
            info: BackendInfo {
                id: "sqlite-local".into(),
                label: "SQLite, local disk".into(),
                description: "SQLite in WAL mode on local disk, one connection per worker".into(),
                location: dir.display().to_string(),
                notes: Vec::new(),
            },
            dir,
            mode: JournalMode::Wal,
            placement: Placement::InPlace,
            cache_kib: 0,
            loaded: None,
            shared: None,
        }
    }

    /// SQLite in `mode` in a directory on a mounted file system (a bucket
    /// mounted with s3fs, gcsfuse…). The database is built in `scratch`
    /// (local disk) and copied into `dir` with one sequential write.
    ///
    /// In WAL mode SQLite needs shared memory (`mmap` of the `-shm` file);
    /// when the mount refuses it, the backend falls back to
    /// `locking_mode=EXCLUSIVE` (the wal-index then lives in the heap), where
    /// one connection serves every worker in turn; the fallback is recorded
    /// in [`BackendInfo::notes`].
    pub fn on_mount(
        dir: impl Into<PathBuf>,
        mode: JournalMode,
        scratch: impl Into<PathBuf>,
    ) -> SqliteBackend {
        let dir = dir.into();
        let (id, label) = match mode {
            JournalMode::Delete => ("sqlite-fuse-delete", "SQLite on a mounted bucket (DELETE)"),
            JournalMode::Wal => ("sqlite-fuse-wal", "SQLite on a mounted bucket (WAL)"),
        };
        SqliteBackend {
            info: BackendInfo {
                id: id.into(),
                label: label.into(),
                description: format!(
                    "SQLite in {} journal mode on a FUSE-mounted bucket",
                    mode.pragma()
                ),
                location: dir.display().to_string(),
                notes: Vec::new(),
            },
            dir,
            mode,
            placement: Placement::CopiedFrom(scratch.into()),
            cache_kib: 0,
            loaded: None,
            shared: None,
        }
    }

    /// Replaces the id, label and description in the report.
    pub fn named(mut self, id: &str, label: &str, description: &str) -> Self {
        self.info.id = id.into();
        self.info.label = label.into();
        self.info.description = description.into();
        self
    }

    /// The journal mode asked for.
    pub fn journal_mode(&self) -> JournalMode {
        self.mode
    }

    /// The loaded database, if any.
    pub fn path(&self) -> Option<&Path> {
        self.loaded.as_deref()
    }
}

/// Opens a loaded database in place and checks that reads and writes work
/// in `mode`. Returns the note for the report, and the one connection to
/// share when WAL works only in exclusive locking mode (no shared memory on
/// this file system).
fn open_in_place(
    path: &Path,
    mode: JournalMode,
    cache: u64,
    backend: &str,
) -> Result<(String, Option<Connection>), BenchError> {
    let probe = |exclusive: bool| -> Result<Connection, BenchError> {
        let c = Connection::open(path).map_err(sqlite_err("opening the database"))?;
        if exclusive {
            // Before anything reads the database: a WAL database opened
            // without exclusive locking maps the -shm file at once.
            c.pragma_update(None, "locking_mode", "EXCLUSIVE")
                .map_err(sqlite_err("setting locking_mode=EXCLUSIVE"))?;
        }
        tune(&c, mode, cache).map_err(sqlite_err("configuring the connection"))?;
        let got: String = c
            .query_row(&format!("PRAGMA journal_mode={}", mode.pragma()), [], |r| {
                r.get(0)
            })
            .map_err(sqlite_err("setting the journal mode"))?;
        if !got.eq_ignore_ascii_case(mode.pragma()) {
            return Err(BenchError::JournalMode {
                path: path.to_path_buf(),
                wanted: mode.pragma(),
                got,
            });
        }
        // The first read maps the wal-index (in WAL mode); the first write
        // takes the locks.
        c.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))
            .map_err(sqlite_err("reading the loaded database"))?;
        c.execute("UPDATE users SET name = name WHERE id = 1", [])
            .map_err(sqlite_err("writing to the loaded database"))?;
        // Measurements start from an empty WAL, as the embedded backend's do
        // (its replicator checkpoints after the first upload): readers of a
        // non-empty WAL look up every page in the wal-index first.
        if mode == JournalMode::Wal {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(sqlite_err("checkpointing the loaded database"))?;
        }
        Ok(c)
    };
    match probe(false) {
        Ok(_) => Ok((
            format!(
                "journal_mode={}, synchronous={}, cache_size={cache} KiB per connection",
                mode.pragma(),
                mode.synchronous()
            ),
            None,
        )),
        Err(first) if mode == JournalMode::Wal => {
            let mut shm = path.as_os_str().to_owned();
            shm.push("-shm");
            let _ = std::fs::remove_file(PathBuf::from(shm));
            let c = probe(true).map_err(|second| BenchError::Setup {
                backend: backend.to_string(),
                reason: format!(
                    "WAL mode fails on {} ({first}) and in exclusive locking mode too ({second}); use DELETE journal mode on this file system",
                    path.display()
                ),
            })?;
            Ok((
                format!(
                    "WAL with shared memory failed here ({first}); fell back to locking_mode=EXCLUSIVE (wal-index in heap memory): one connection shared by all workers; synchronous=NORMAL, cache_size={cache} KiB"
                ),
                Some(c),
            ))
        }
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn info(&self) -> BackendInfo {
        self.info.clone()
    }

    async fn load(&mut self, setup: &Setup) -> Result<LoadInfo, BenchError> {
        setup.dataset.validate()?;
        self.shared = None;
        if let Some(old) = self.loaded.take() {
            remove_db(&old)?;
        }
        self.cache_kib = setup.sqlite_cache_kib;
        let start = Instant::now();
        let target = db_file(&self.dir, &setup.dataset.name);
        let spec = setup.dataset.clone();
        let mode = self.mode;
        let placement = self.placement.clone();
        let t = target.clone();
        let bytes = blocking(move || -> Result<u64, BenchError> {
            match placement {
                Placement::InPlace => build_sqlite(&t, &spec, mode),
                Placement::CopiedFrom(scratch) => {
                    let local = db_file(&scratch, &format!("{}_build", spec.name));
                    // Built in DELETE mode: the file copied is the whole
                    // database; the mode is set on the mount.
                    let bytes = build_sqlite(&local, &spec, JournalMode::Delete)?;
                    remove_db(&t)?;
                    copy_synced(&local, &t)?;
                    remove_db(&local)?;
                    Ok(bytes)
                }
            }
        })
        .await??;
        self.loaded = Some(target.clone());
        let id = self.info.id.clone();
        let cache = self.cache_kib;
        let (note, shared) = blocking(move || open_in_place(&target, mode, cache, &id)).await??;
        self.info.notes = vec![note];
        self.shared = shared.map(|c| Arc::new(Mutex::new(c)));
        Ok(LoadInfo {
            backend: self.info.id.clone(),
            dataset: setup.dataset.name.clone(),
            load_ms: start.elapsed().as_secs_f64() * 1000.0,
            data_bytes: Some(bytes),
            cache_bytes: Some(setup.sqlite_cache_kib * 1024),
        })
    }

    async fn session(&self) -> Result<Box<dyn Session>, BenchError> {
        let path = self.loaded.clone().ok_or_else(|| BenchError::NotLoaded {
            backend: self.info.id.clone(),
        })?;
        if let Some(shared) = &self.shared {
            return Ok(Box::new(SqliteSession {
                access: Access::Shared(shared.clone()),
            }));
        }
        let mode = self.mode;
        let cache = self.cache_kib;
        let c = blocking(move || open_tuned(&path, mode, cache)).await??;
        Ok(Box::new(SqliteSession {
            access: Access::Own(c),
        }))
    }

    async fn close(&mut self) -> Result<(), BenchError> {
        self.shared = None;
        if let Some(p) = self.loaded.take() {
            blocking(move || remove_db(&p)).await??;
        }
        Ok(())
    }
}

/// Copies `from` to `to` and fsyncs `to` (on a FUSE mount, the upload
/// happens at flush or fsync).
fn copy_synced(from: &Path, to: &Path) -> Result<(), BenchError> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    std::fs::copy(from, to).map_err(io_err(to))?;
    std::fs::File::options()
        .write(true)
        .open(to)
        .and_then(|f| f.sync_all())
        .map_err(io_err(to))
}

use litevault::task::blocking;

/// How long the embedded backend waits for the first upload of a dataset.
const INITIAL_UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// SQLite replicated by an embedded [`Vault`]: reads through the vault's
/// reader pool, writes through its writer (the commit hook wakes the
/// shipper); replication runs in the background as in an application.
pub struct VaultBackend {
    info: BackendInfo,
    dir: PathBuf,
    replica_url: String,
    credentials: Option<S3Credentials>,
    options: VaultOptions,
    durable: bool,
    vault: Option<Arc<Vault>>,
    loaded: Option<(PathBuf, String)>,
}

impl VaultBackend {
    /// A vault in `dir` replicating dataset `<name>` to `<replica_url>/<name>`
    /// (e.g. `file:///tmp/r` or `s3://bucket/bench`). LTX files already
    /// under that prefix are deleted before loading: give it a URL of its
    /// own.
    pub fn new(dir: impl Into<PathBuf>, replica_url: &str) -> VaultBackend {
        let dir = dir.into();
        VaultBackend {
            info: BackendInfo {
                id: "litevault-embedded".into(),
                label: "SQLite + litevault (embedded)".into(),
                description: "SQLite in WAL mode on local disk, replicated by an embedded litevault Vault; reads from its reader pool, writes through its writer".into(),
                location: dir.display().to_string(),
                notes: Vec::new(),
            },
            dir,
            replica_url: replica_url.to_string(),
            credentials: None,
            options: VaultOptions::default(),
            durable: false,
            vault: None,
            loaded: None,
        }
    }

    /// Explicit S3 credentials for the replica.
    pub fn with_credentials(mut self, creds: S3Credentials) -> Self {
        self.credentials = Some(creds);
        self
    }

    /// Replaces the id, label and description in the report.
    pub fn named(mut self, id: &str, label: &str, description: &str) -> Self {
        self.info.id = id.into();
        self.info.label = label.into();
        self.info.description = description.into();
        self
    }

    /// The vault's settings (default: [`VaultOptions::default`], as an
    /// application gets it). The reader pool is sized to the run's sessions
    /// and the lease is turned off whatever is given here.
    pub fn with_options(mut self, options: VaultOptions) -> Self {
        self.options = options;
        self
    }

    /// Durable commits: each insert returns only once the replica holds it
    /// ([`Vault::transaction_durable`]), so write latency includes the
    /// upload. Reads are unchanged. The id becomes `litevault-durable`.
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self.info.id = "litevault-durable".into();
        self.info.label = "SQLite + litevault (embedded, durable commits)".into();
        self.info.description = "as litevault-embedded, but each write transaction returns only once the replica holds it".into();
        self
    }

    /// The replica URL a dataset is replicated to: the dataset name added to
    /// the URL's path, before any query (`s3://b/p?endpoint=…` gives
    /// `s3://b/p/small?endpoint=…`).
    pub fn replica_url(&self, dataset: &str) -> String {
        match self.replica_url.split_once('?') {
            Some((base, query)) => {
                format!("{}/{dataset}?{query}", base.trim_end_matches('/'))
            }
            None => format!("{}/{dataset}", self.replica_url.trim_end_matches('/')),
        }
    }

    /// The running vault of the loaded dataset.
    pub fn vault(&self) -> Option<&Arc<Vault>> {
        self.vault.as_ref()
    }

    /// The loaded database, if any.
    pub fn path(&self) -> Option<&Path> {
        self.loaded.as_ref().map(|(p, _)| p.as_path())
    }

    async fn stop(&mut self) -> Result<(), BenchError> {
        if let Some(v) = self.vault.take() {
            match Arc::try_unwrap(v) {
                Ok(v) => v.close().await?,
                // A session still holds it: it stops in the background when
                // the last one goes.
                Err(v) => drop(v),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for VaultBackend {
    fn info(&self) -> BackendInfo {
        self.info.clone()
    }

    async fn load(&mut self, setup: &Setup) -> Result<LoadInfo, BenchError> {
        setup.dataset.validate()?;
        self.stop().await?;
        if let Some((old, _)) = self.loaded.take() {
            remove_db(&old)?;
        }
        let start = Instant::now();
        let url = self.replica_url(&setup.dataset.name);
        let replica =
            Replica::open_with_credentials(&url, self.credentials.as_ref()).map_err(|e| {
                BenchError::Setup {
                    backend: self.info.id.clone(),
                    reason: e.to_string(),
                }
            })?;
        // A fresh database gets a fresh replica.
        let old = replica.list_all().await.map_err(|e| BenchError::Setup {
            backend: self.info.id.clone(),
            reason: format!("listing {url}: {e}"),
        })?;
        if !old.is_empty() {
            replica
                .delete_files(&old)
                .await
                .map_err(|e| BenchError::Setup {
                    backend: self.info.id.clone(),
                    reason: format!("clearing {url}: {e}"),
                })?;
        }
        let path = db_file(&self.dir, &setup.dataset.name);
        let spec = setup.dataset.clone();
        let p = path.clone();
        let bytes = blocking(move || build_sqlite(&p, &spec, JournalMode::Wal)).await??;
        // From here on, close() cleans up whatever happens.
        self.loaded = Some((path.clone(), url.clone()));
        let opts = VaultOptions {
            readers: setup.sessions.max(1),
            replicate: ReplicateOptions {
                // The benchmark owns this throwaway prefix.
                lease: None,
                ..self.options.replicate.clone()
            },
            ..self.options.clone()
        };
        let vault = Vault::open(&path)
            .replica(replica)
            .options(opts)
            .start()
            .await?;
        let vault = Arc::new(vault);
        self.vault = Some(vault.clone());
        // Same page cache as the other SQLite backends, on every connection
        // of the vault (the pool holds exactly `readers` connections).
        let cache = -(setup.sqlite_cache_kib as i64);
        vault
            .writer()
            .await
            .pragma_update(None, "cache_size", cache)
            .map_err(sqlite_err("configuring the vault's writer"))?;
        {
            let mut readers = Vec::new();
            for _ in 0..setup.sessions.max(1) {
                readers.push(vault.reader().await);
            }
            for r in &readers {
                r.pragma_update(None, "cache_size", cache)
                    .map_err(sqlite_err("configuring the vault's readers"))?;
            }
        }
        // Measure steady state, not the initial upload.
        let txid = match tokio::time::timeout(INITIAL_UPLOAD_TIMEOUT, vault.replicator().sync_all())
            .await
        {
            Ok(Ok(txid)) => txid,
            Ok(Err(e)) => {
                return Err(BenchError::Setup {
                    backend: self.info.id.clone(),
                    reason: format!("initial replication to {url}: {e}"),
                });
            }
            Err(_) => {
                return Err(BenchError::Setup {
                    backend: self.info.id.clone(),
                    reason: format!(
                        "the initial upload to {url} did not finish in {INITIAL_UPLOAD_TIMEOUT:?}; check that the replica is reachable (endpoint, credentials) and fast enough for this dataset"
                    ),
                });
            }
        };
        self.info.notes.retain(|n| !n.starts_with("replica "));
        self.info.notes.push(format!(
            "replica {url}: dataset {} shipped as TXID {txid}; cache_size={} KiB per connection, {} readers",
            setup.dataset.name,
            setup.sqlite_cache_kib,
            setup.sessions.max(1)
        ));
        drop(vault);
        Ok(LoadInfo {
            backend: self.info.id.clone(),
            dataset: setup.dataset.name.clone(),
            load_ms: start.elapsed().as_secs_f64() * 1000.0,
            data_bytes: Some(bytes),
            cache_bytes: Some(setup.sqlite_cache_kib * 1024),
        })
    }

    async fn session(&self) -> Result<Box<dyn Session>, BenchError> {
        let vault = self.vault.clone().ok_or_else(|| BenchError::NotLoaded {
            backend: self.info.id.clone(),
        })?;
        Ok(Box::new(SqliteSession {
            access: Access::Vault {
                vault,
                durable: self.durable,
            },
        }))
    }

    async fn close(&mut self) -> Result<(), BenchError> {
        self.stop().await?;
        if let Some((p, _)) = self.loaded.take() {
            blocking(move || remove_db(&p)).await??;
        }
        Ok(())
    }
}

/// How a session reaches its database.
enum Access {
    /// Its own connection.
    Own(Connection),
    /// One connection shared by every session (exclusive locking mode).
    Shared(Arc<Mutex<Connection>>),
    /// The vault's reader pool and writer; durable: writes wait for the
    /// replica.
    Vault { vault: Arc<Vault>, durable: bool },
}

/// A session over SQLite.
pub struct SqliteSession {
    access: Access,
}

impl SqliteSession {
    async fn read<R>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send,
    ) -> Result<R, BenchError> {
        let r = match &mut self.access {
            Access::Own(c) => f(c),
            Access::Shared(m) => f(&*m.lock().map_err(|_| poisoned())?),
            Access::Vault { vault, .. } => {
                let reader = vault.reader().await;
                f(&reader)
            }
        };
        r.map_err(sqlite_err("query"))
    }

    async fn write<R>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R> + Send,
    ) -> Result<R, BenchError> {
        let r = match &mut self.access {
            Access::Own(c) => f(c),
            Access::Shared(m) => f(&mut *m.lock().map_err(|_| poisoned())?),
            Access::Vault { vault, .. } => {
                let mut w = vault.writer().await;
                f(&mut w)
            }
        };
        r.map_err(sqlite_err("insert transaction"))
    }
}

fn poisoned() -> BenchError {
    BenchError::Internal("a session panicked while holding the shared connection".into())
}

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        author_id: r.get(2)?,
        body: r.get(3)?,
        created_at: r.get(4)?,
    })
}

#[async_trait]
impl Session for SqliteSession {
    async fn message(&mut self, id: i64) -> Result<Option<Message>, BenchError> {
        self.read(|c| {
            c.prepare_cached(Q_MESSAGE)?
                .query_row([id], message_row)
                .optional()
        })
        .await
    }

    async fn messages_from(
        &mut self,
        first_id: i64,
        limit: u32,
    ) -> Result<Vec<Message>, BenchError> {
        self.read(|c| {
            c.prepare_cached(Q_MESSAGES_FROM)?
                .query_map(params![first_id, limit], message_row)?
                .collect()
        })
        .await
    }

    async fn user(&mut self, id: i64) -> Result<Option<User>, BenchError> {
        self.read(|c| {
            c.prepare_cached(Q_USER)?
                .query_row([id], |r| {
                    Ok(User {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        email: r.get(2)?,
                        avatar_url: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                })
                .optional()
        })
        .await
    }

    async fn conversation(&mut self, id: i64) -> Result<Option<Conversation>, BenchError> {
        self.read(|c| {
            c.prepare_cached(Q_CONVERSATION)?
                .query_row([id], |r| {
                    Ok(Conversation {
                        id: r.get(0)?,
                        owner_id: r.get(1)?,
                        title: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })
                .optional()
        })
        .await
    }

    async fn participants(&mut self, conversation_id: i64) -> Result<Vec<i64>, BenchError> {
        self.read(|c| {
            c.prepare_cached(Q_PARTICIPANTS)?
                .query_map([conversation_id], |r| r.get(0))?
                .collect()
        })
        .await
    }

    async fn recent_messages(
        &mut self,
        conversation_id: i64,
        limit: u32,
    ) -> Result<Vec<Message>, BenchError> {
        self.read(|c| {
            c.prepare_cached(Q_RECENT)?
                .query_map(params![conversation_id, limit], message_row)?
                .collect()
        })
        .await
    }

    async fn message_count(&mut self, conversation_id: i64) -> Result<i64, BenchError> {
        self.read(|c| {
            c.prepare_cached(Q_COUNT)?
                .query_row([conversation_id], |r| r.get(0))
        })
        .await
    }

    async fn conversations_of(
        &mut self,
        owner_id: i64,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, BenchError> {
        self.read(|c| {
            c.prepare_cached(Q_CONVERSATIONS_OF)?
                .query_map(params![owner_id, limit], |r| {
                    Ok(ConversationSummary {
                        id: r.get(0)?,
                        title: r.get(1)?,
                    })
                })?
                .collect()
        })
        .await
    }

    async fn insert_message(&mut self, m: &NewMessage) -> Result<i64, BenchError> {
        if let Access::Vault {
            vault,
            durable: true,
        } = &self.access
        {
            return Ok(vault
                .transaction_durable(|tx| {
                    tx.prepare_cached(Q_INSERT)?.query_row(
                        params![m.conversation_id, m.author_id, m.body, m.created_at],
                        |r| r.get(0),
                    )
                })
                .await?);
        }
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id = tx.prepare_cached(Q_INSERT)?.query_row(
                params![m.conversation_id, m.author_id, m.body, m.created_at],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(id)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dataset_goes_into_the_replica_path_before_the_query() {
        let b = VaultBackend::new(
            "/tmp/x",
            "s3://bucket/bench/?endpoint=http://127.0.0.1:9000&region=us-east-1",
        );
        assert_eq!(
            b.replica_url("small"),
            "s3://bucket/bench/small?endpoint=http://127.0.0.1:9000&region=us-east-1"
        );
        assert_eq!(
            VaultBackend::new("/tmp/x", "file:///tmp/r/").replica_url("large"),
            "file:///tmp/r/large"
        );
        assert_eq!(
            VaultBackend::new("/tmp/x", "s3://bucket").replica_url("tiny"),
            "s3://bucket/tiny"
        );
    }
}
