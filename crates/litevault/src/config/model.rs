//! The resolved configuration: every value validated, every default filled
//! in, paths absolute, replica URLs canonical.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::ConfigError;
use super::glob::Pattern;
use crate::db::CheckpointOptions;
pub use crate::redact::Secret;
use crate::replica::{Replica, ReplicaError, ReplicaLocation, S3Credentials, Scheme};
use crate::replicate::ReplicateOptions;

/// The resolved configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The file it was read from (`None` when parsed from a string).
    pub file: Option<PathBuf>,
    /// The databases, in file order.
    pub dbs: Vec<DbConfig>,
    /// HTTP bind address (`addr`, or `http.addr`), e.g. `:9090`, or
    /// `systemd` for the socket systemd socket activation passed
    /// (`server::systemd`, with the `http` feature); `None` disables the server.
    pub addr: Option<String>,
    /// `/readyz` fails once a database lags more than this.
    pub readyz_max_lag: Duration,
    /// The command to supervise (`exec`).
    pub exec: Option<String>,
    /// Logging.
    pub logging: LoggingConfig,
    /// Time allowed for the final sync at shutdown (`shutdown-timeout`, or
    /// Litestream's `shutdown-sync-timeout`).
    pub shutdown_timeout: Duration,
    /// The replica lease.
    pub lease: LeaseConfig,
    /// The top-level compaction levels (every database uses them).
    pub compaction: CompactionLevels,
    /// The top-level snapshot settings (a database may override them).
    pub snapshot: SnapshotPolicy,
    /// The top-level retention settings (every database uses them).
    pub retention: RetentionPolicy,
    /// Warnings found while reading (unset variables, ignored keys...).
    pub warnings: Vec<super::Problem>,
    pub(crate) origins: std::collections::BTreeMap<String, Origin>,
}

impl Config {
    /// Where the value of a key (as `explain` names it, e.g.
    /// `dbs[0].replicas[0].sync-interval`) came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// The options of the replicator of one database (all its replicas).
    /// `page_size` converts a checkpoint threshold given in pages
    /// (`truncate-page-n`) to bytes. The replicas share one stream of files,
    /// so the sync interval is the shortest of theirs and Litestream-
    /// compatible files are written when any replica asks for them.
    pub fn replicate_options(&self, db: &DbConfig, page_size: u32) -> ReplicateOptions {
        let sync_interval = db
            .replicas
            .iter()
            .map(|r| r.sync_interval)
            .min()
            .unwrap_or(super::defaults::SYNC_INTERVAL);
        ReplicateOptions {
            poll_interval: db.poll_interval,
            checkpoint: db.checkpoint.options(page_size),
            shutdown_timeout: self.shutdown_timeout,
            litestream_compat: db.replicas.iter().any(|r| r.litestream_compat),
            retention: crate::replicate::RetentionOptions {
                enabled: db.retention.enabled,
                levels: db.compaction.0.iter().map(|l| l.interval).collect(),
                snapshot_interval: Some(db.snapshot.interval).filter(|d| !d.is_zero()),
                snapshot_retention: db.snapshot.retention,
                l0_retention: db.retention.l0_retention,
                check_interval: db.retention.l0_retention_check_interval,
            },
            lease: Some(crate::replicate::LeaseOptions {
                ttl: self.lease.ttl,
                takeover: false,
                wait: self.lease.wait,
            }),
            sync_interval,
            ..ReplicateOptions::default()
        }
    }

    /// Every database, with `dir` sources expanded to the databases they hold
    /// now (see [`DbConfig::instances`]). Fails when two of them would
    /// replicate to the same place.
    pub fn expand_dbs(&self) -> Result<Vec<DbConfig>, ConfigError> {
        let mut out: Vec<DbConfig> = Vec::new();
        for db in &self.dbs {
            out.extend(db.instances()?);
        }
        let mut seen: Vec<(String, PathBuf)> = Vec::new();
        for db in &out {
            let DbSource::Path(path) = &db.source else {
                continue;
            };
            for r in &db.replicas {
                let key = r.identity();
                if let Some((_, other)) = seen.iter().find(|(k, _)| *k == key) {
                    return Err(ConfigError::SharedReplica {
                        url: r.url.clone(),
                        first: other.clone(),
                        second: path.clone(),
                    });
                }
                seen.push((key, path.clone()));
            }
        }
        Ok(out)
    }
}

/// Where a setting came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum Origin {
    /// Not set: the default of [`super::defaults`].
    Default,
    /// Written in the file, on this line.
    File {
        /// 1-based line.
        line: u32,
    },
    /// Written in the file with `$VAR` references, expanded.
    Env {
        /// 1-based line.
        line: u32,
        /// The variables referenced on the line.
        vars: Vec<String>,
    },
    /// Inherited from a top-level key of the file (global replica
    /// settings, `snapshot`, `levels`...).
    Global {
        /// 1-based line of the top-level key.
        line: u32,
        /// Whether that line used `$VAR` references.
        env: bool,
    },
    /// Not in the file: read from the process environment when the replica
    /// is opened.
    ProcessEnv {
        /// The variable.
        var: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { line } => write!(f, "file:{line}"),
            Origin::Env { line, vars } => {
                let vars: Vec<String> = vars.iter().map(|v| format!("${v}")).collect();
                write!(f, "env {} (file:{line})", vars.join(" "))
            }
            Origin::Global { line, env: false } => write!(f, "global file:{line}"),
            Origin::Global { line, env: true } => write!(f, "global env (file:{line})"),
            Origin::ProcessEnv { var } => write!(f, "env {var} (at open)"),
        }
    }
}

/// One database entry.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DbConfig {
    /// How `explain` and errors name it: `dbs[0]`.
    pub key: String,
    /// A file, or a directory of files.
    pub source: DbSource,
    /// Its replicas (at least one).
    pub replicas: Vec<ReplicaConfig>,
    /// How often the WAL is looked at (`poll-interval` / `monitor-interval`).
    pub poll_interval: Duration,
    /// Checkpoint thresholds.
    pub checkpoint: CheckpointPolicy,
    /// SQLite busy timeout of litevault's connections.
    pub busy_timeout: Duration,
    /// Compaction levels L1.. (the top-level `levels`).
    pub compaction: CompactionLevels,
    /// Snapshots (level 9).
    pub snapshot: SnapshotPolicy,
    /// Retention of L0 files and enforcement.
    pub retention: RetentionPolicy,
    /// Restore the database from its first replica at startup when missing.
    pub restore_if_db_not_exists: bool,
}

impl DbConfig {
    /// One configuration per database: itself for a `path` source; for a
    /// `dir` source, one per database found now, each replica extended by
    /// the database's path relative to the directory (as Litestream does,
    /// so `dir: /data`, `users/a.db` and `s3://b/all` give `s3://b/all/users/a.db`).
    pub fn instances(&self) -> Result<Vec<DbConfig>, ConfigError> {
        let DbSource::Dir { dir, .. } = &self.source else {
            return Ok(vec![self.clone()]);
        };
        let found = self.source.expand()?;
        if let DbSource::Dir {
            pattern,
            watch: false,
            ..
        } = &self.source
            && found.is_empty()
        {
            return Err(ConfigError::NoDatabases {
                dir: dir.clone(),
                pattern: pattern.to_string(),
            });
        }
        Ok(found.into_iter().map(|p| self.instance(p)).collect())
    }

    /// The entry of one database of this `dir` source: its path, and each
    /// replica under the database's path relative to the directory (the
    /// entry itself for a `path` source).
    pub fn instance(&self, path: PathBuf) -> DbConfig {
        let DbSource::Dir { dir, .. } = &self.source else {
            return self.clone();
        };
        let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
        let mut db = self.clone();
        db.source = DbSource::Path(path);
        db.replicas = self
            .replicas
            .iter()
            .map(|r| r.for_relative_path(&rel))
            .collect();
        db
    }
}

/// What a `dbs` entry names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbSource {
    /// One database file (absolute).
    Path(PathBuf),
    /// Every SQLite database in a directory whose file name matches.
    Dir {
        /// The directory (absolute).
        dir: PathBuf,
        /// The file-name pattern.
        pattern: Pattern,
        /// Whether subdirectories are scanned.
        recursive: bool,
        /// Whether the directory is watched for new databases.
        watch: bool,
    },
}

impl DbSource {
    /// The database paths: the path itself, or the files in the directory
    /// (and its subdirectories when recursive) whose name matches the
    /// pattern and that start with the SQLite header, sorted.
    pub fn expand(&self) -> Result<Vec<PathBuf>, ConfigError> {
        match self {
            DbSource::Path(p) => Ok(vec![p.clone()]),
            DbSource::Dir {
                dir,
                pattern,
                recursive,
                ..
            } => {
                let mut out = Vec::new();
                scan(dir, pattern, *recursive, &mut out).map_err(|source| ConfigError::Scan {
                    dir: dir.clone(),
                    source,
                })?;
                out.sort();
                Ok(out)
            }
        }
    }
}

/// The files under `dir` whose name matches `pattern` (in subdirectories
/// too when `recursive`, as [`DbSource::expand`] looks), SQLite databases
/// or not, and the directories looked in.
pub(crate) fn matching_files(
    dir: &Path,
    pattern: &Pattern,
    recursive: bool,
    files: &mut Vec<PathBuf>,
    dirs: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    dirs.push(dir.to_path_buf());
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ty = entry.file_type()?;
        let name = entry.file_name();
        if ty.is_dir() {
            if recursive {
                // A subdirectory removed meanwhile is not an error.
                match matching_files(&path, pattern, recursive, files, dirs) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    r => r?,
                }
            }
            continue;
        }
        if pattern.matches(&name.to_string_lossy()) {
            files.push(path);
        }
    }
    Ok(())
}

fn scan(
    dir: &Path,
    pattern: &Pattern,
    recursive: bool,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ty = entry.file_type()?;
        if ty.is_dir() {
            if recursive {
                scan(&path, pattern, recursive, out)?;
            }
            continue;
        }
        let name = entry.file_name();
        if pattern.matches(&name.to_string_lossy()) && is_sqlite(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Whether the file starts with SQLite's header.
pub(crate) fn is_sqlite(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map(|_| &header == b"SQLite format 3\0")
        .unwrap_or(false)
}

/// The replica types litevault supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicaKind {
    /// A local directory.
    File,
    /// S3 or an S3-compatible service.
    S3,
    /// Google Cloud Storage.
    Gs,
    /// Azure Blob Storage.
    Abs,
}

impl ReplicaKind {
    /// The name used by `type:`.
    pub fn name(self) -> &'static str {
        match self {
            ReplicaKind::File => "file",
            ReplicaKind::S3 => "s3",
            ReplicaKind::Gs => "gs",
            ReplicaKind::Abs => "abs",
        }
    }
}

/// One replica of a database.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReplicaConfig {
    /// How `explain` and errors name it: `dbs[0].replicas[1]`.
    pub key: String,
    /// The optional `name`.
    pub name: Option<String>,
    /// The type.
    pub kind: ReplicaKind,
    /// The canonical replica URL, the form [`Replica::open`] takes:
    /// `file:///dir`, `s3://bucket/prefix?endpoint=..&region=..&force-path-style=true`,
    /// `gs://bucket/prefix`, `abs://account@container/prefix`.
    pub url: String,
    /// The URL, parsed.
    pub location: ReplicaLocation,
    /// S3 access key id from the file (else the environment is used).
    pub access_key_id: Option<String>,
    /// S3 secret access key from the file.
    pub secret_access_key: Option<Secret>,
    /// Azure account key from the file.
    pub account_key: Option<Secret>,
    /// S3 SSE-C key from the file (`sse-customer-key`, or a key in the URL);
    /// never part of [`ReplicaConfig::url`].
    pub sse_customer_key: Option<Secret>,
    /// The file holding the SSE-C key (`sse-customer-key-path`), read when
    /// the replica opens.
    pub sse_customer_key_path: Option<PathBuf>,
    /// How often the replica is synced.
    pub sync_interval: Duration,
    /// Write files Litestream 0.5 can restore.
    pub litestream_compat: bool,
}

impl ReplicaConfig {
    /// The S3 credentials given in the file, if both halves are.
    pub fn s3_credentials(&self) -> Option<S3Credentials> {
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => Some(S3Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.expose().to_string(),
            }),
            _ => None,
        }
    }

    /// Opens the replica, with the credentials of the file (which take
    /// precedence over the environment).
    pub fn open(&self) -> Result<Replica, ReplicaError> {
        match (&self.kind, &self.account_key) {
            (ReplicaKind::Abs, Some(key)) => Replica::open_with_azure_key(&self.url, key.expose()),
            (ReplicaKind::S3, _) => Replica::open_s3(
                &self.url,
                self.s3_credentials().as_ref(),
                self.sse_customer_key()?.as_ref(),
            ),
            _ => Replica::open_with_credentials(&self.url, self.s3_credentials().as_ref()),
        }
    }

    /// The SSE-C key: the value given, or the content of
    /// `sse-customer-key-path` (read now, so a rotated file is seen at the
    /// next start).
    pub fn sse_customer_key(&self) -> Result<Option<Secret>, ReplicaError> {
        let Some(path) = &self.sse_customer_key_path else {
            return Ok(self.sse_customer_key.clone());
        };
        let bad = |reason: String| ReplicaError::BadUrl {
            url: self.url.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            bad(format!(
                "cannot read sse-customer-key-path {}: {e}; give the file holding the base64 key",
                path.display()
            ))
        })?;
        crate::replica::check_sse_customer_key(&text, None)
            .map(Some)
            .map_err(|e| bad(format!("{} ({})", e, path.display())))
    }

    /// The replica of one database of a `dir` source: the prefix (or
    /// directory) extended by the database's relative path.
    pub fn for_relative_path(&self, rel: &Path) -> ReplicaConfig {
        let mut r = self.clone();
        let rel = rel.to_string_lossy().replace('\\', "/");
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            return r;
        }
        r.location.path = if r.location.path.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", r.location.path.trim_end_matches('/'))
        };
        r.url = canonical_url(&r.location);
        r
    }

    /// What identifies the place the replica writes to (scheme, endpoint,
    /// bucket, prefix), to find two databases writing to the same place.
    pub(crate) fn identity(&self) -> String {
        let l = &self.location;
        format!(
            "{:?}|{}|{}|{}|{}",
            l.scheme,
            l.endpoint.as_deref().unwrap_or(""),
            l.account.as_deref().unwrap_or(""),
            l.bucket,
            l.path.trim_matches('/')
        )
    }
}

/// The canonical URL of a location (the inverse of [`ReplicaLocation::parse`]).
pub fn canonical_url(l: &ReplicaLocation) -> String {
    let scheme = match l.scheme {
        // Percent-encoded where the path holds `%`, `?`, `#`, spaces...:
        // `ReplicaLocation::parse` decodes them.
        Scheme::File => {
            return url::Url::from_file_path(&l.path)
                .map(|u| u.to_string())
                .unwrap_or_else(|_| format!("file://{}", l.path));
        }
        Scheme::S3 => "s3",
        Scheme::Gcs => "gs",
        Scheme::Azure => "abs",
        Scheme::Memory => "memory",
    };
    // In the path, only the characters that would end it are escaped:
    // `ReplicaLocation::parse` keeps the path as the URL writes it.
    let enc = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                ' ' => "%20".to_string(),
                '?' => "%3F".to_string(),
                '#' => "%23".to_string(),
                c => c.to_string(),
            })
            .collect()
    };
    // The account (the user part) is decoded by the parser: everything but
    // the unreserved characters is escaped.
    let account = l
        .account
        .as_deref()
        .map(|a| {
            let a: String = a
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{a}@")
        })
        .unwrap_or_default();
    let mut out = format!("{scheme}://{account}{}", l.bucket);
    if !l.path.is_empty() {
        out.push('/');
        out.push_str(&enc(&l.path));
    }
    // Query values keep `:` and `/` readable (both are allowed in a query).
    let qv = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z'
                | b'a'..=b'z'
                | b'0'..=b'9'
                | b'-'
                | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let mut q: Vec<String> = Vec::new();
    if let Some(e) = &l.endpoint {
        q.push(format!("endpoint={}", qv(e)));
    }
    if let Some(r) = &l.region {
        q.push(format!("region={}", qv(r)));
    }
    if l.force_path_style && l.endpoint.is_none() {
        q.push("force-path-style=true".into());
    }
    if l.skip_verify {
        q.push("skip-verify=true".into());
    }
    if let Some(c) = &l.storage_class {
        q.push(format!("storage-class={}", qv(c)));
    }
    // The SSE-C key is a secret: never in the canonical URL.
    if let Some(crate::replica::ServerSideEncryption::Kms { key_id }) = &l.sse {
        q.push(format!("sse-kms-key-id={}", qv(key_id)));
    }
    if !q.is_empty() {
        out.push('?');
        out.push_str(&q.join("&"));
    }
    out
}

/// Checkpoint thresholds of one database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Time-based PASSIVE checkpoint (`checkpoint-interval`; zero disables).
    pub interval: Duration,
    /// PASSIVE checkpoint once the WAL holds this many frames
    /// (`min-checkpoint-page-count`; zero disables).
    pub min_pages: u64,
    /// TRUNCATE checkpoint threshold.
    pub truncate: TruncateThreshold,
}

impl CheckpointPolicy {
    /// The database's checkpoint options for a page size.
    pub fn options(&self, page_size: u32) -> CheckpointOptions {
        CheckpointOptions {
            min_pages: self.min_pages,
            truncate_bytes: self.truncate.bytes(page_size),
            interval: self.interval,
        }
    }
}

/// When the WAL is truncated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TruncateThreshold {
    /// Once the WAL file is this many bytes (`truncate-wal-size`).
    Bytes(u64),
    /// Once the WAL holds this many pages (Litestream's `truncate-page-n`).
    Pages(u64),
}

impl TruncateThreshold {
    /// The threshold in bytes for a page size (a WAL frame is a 24-byte
    /// header plus a page).
    pub fn bytes(self, page_size: u32) -> u64 {
        match self {
            TruncateThreshold::Bytes(b) => b,
            TruncateThreshold::Pages(n) => n.saturating_mul(u64::from(page_size) + 24),
        }
    }
}

/// One compaction level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionLevel {
    /// 1..=8.
    pub level: u8,
    /// How often files of the level below are compacted into it.
    pub interval: Duration,
}

/// Compaction levels L1.. in order (L0 and the snapshot level 9 are
/// implicit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionLevels(pub Vec<CompactionLevel>);

impl Default for CompactionLevels {
    fn default() -> Self {
        CompactionLevels(
            super::defaults::COMPACTION_LEVELS
                .iter()
                .enumerate()
                .map(|(i, d)| CompactionLevel {
                    level: i as u8 + 1,
                    interval: *d,
                })
                .collect(),
        )
    }
}

/// Snapshots (level 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// How often a snapshot is taken.
    pub interval: Duration,
    /// How long snapshots are kept.
    pub retention: Duration,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            interval: super::defaults::SNAPSHOT_INTERVAL,
            retention: super::defaults::SNAPSHOT_RETENTION,
        }
    }
}

/// Retention of L0 files and whether litevault deletes at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Whether expired files are deleted (`retention.enabled`).
    pub enabled: bool,
    /// How long L0 files are kept after compaction (`l0-retention`).
    pub l0_retention: Duration,
    /// How often expired L0 files are swept (`l0-retention-check-interval`).
    pub l0_retention_check_interval: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            enabled: super::defaults::RETENTION_ENABLED,
            l0_retention: super::defaults::L0_RETENTION,
            l0_retention_check_interval: super::defaults::L0_RETENTION_CHECK_INTERVAL,
        }
    }
}

/// Log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// trace
    Trace,
    /// debug
    Debug,
    /// info
    Info,
    /// warn
    Warn,
    /// error
    Error,
}

/// Log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
    /// Multi-line human-readable records.
    Pretty,
}

/// `logging`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoggingConfig {
    /// Level.
    pub level: LogLevel,
    /// Format.
    pub format: LogFormat,
    /// Log to stderr (the default), else to stdout. Litestream's default is
    /// stdout ([`crate::defaults::LOG_TO_STDERR`] says why litevault's is not).
    pub stderr: bool,
}

/// `lease`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a lease lasts without renewal.
    pub ttl: Duration,
    /// How long a start waits for a lease another replicator holds.
    pub wait: Duration,
}
