//! The configuration file: Litestream's `litestream.yml` read as it is, plus
//! litevault's own keys.
//!
//! [`Config::load`] reads a file; [`Config::parse`] does the rest without
//! I/O: `$VAR` expansion ([`mod@env`]), YAML with locations ([`raw`]), then
//! validation and defaults into the resolved model ([`Config`],
//! [`DbConfig`], [`ReplicaConfig`]). Every default is in [`defaults`].
//!
//! # How Litestream's keys map
//!
//! | Litestream key | litevault |
//! |---|---|
//! | `dbs[].path` | [`DbSource::Path`] (`~` and `sqlite://` handled, relative to the working directory, as Litestream) |
//! | `dbs[].dir`, `pattern`, `recursive`, `watch` | [`DbSource::Dir`]; [`DbSource::expand`] and [`DbConfig::instances`] find the databases; with `watch`, [`DirWatch`] picks up those created and lets go of those removed while running |
//! | `dbs[].replica` (v0.5) / `replicas` (before v0.5) | [`DbConfig::replicas`]; litevault allows several |
//! | replica `url`, or `type` + `bucket` + `path` + `endpoint` + `region` + `force-path-style` + `skip-verify` | [`ReplicaConfig::url`], canonical, the form [`crate::Replica::open`] takes |
//! | `s3://` hosts such as `bkt.s3.REGION.amazonaws.com`, `bkt.host:port` (MinIO), DigitalOcean, Backblaze, Filebase, Scaleway | bucket, region, endpoint and path style, as Litestream's `s3.ParseHost` |
//! | replica `type`: `file`, `s3`, `gs`, `abs` | [`ReplicaKind`]; `sftp`, `webdav`, `nats`, `oss` are refused |
//! | `access-key-id`, `secret-access-key` (replica or top level) | [`ReplicaConfig::access_key_id`], [`ReplicaConfig::secret_access_key`] ([`Secret`]) |
//! | `account-name`, `account-key` (Azure) | the URL's `account@`, [`ReplicaConfig::account_key`] |
//! | `sync-interval` (replica or top level) | [`ReplicaConfig::sync_interval`] |
//! | `snapshot.interval`, `snapshot.retention` (top level or per db) | [`DbConfig::snapshot`] |
//! | `levels[].interval` | [`DbConfig::compaction`] |
//! | `l0-retention`, `l0-retention-check-interval`, `retention.enabled` | [`DbConfig::retention`] |
//! | `checkpoint-interval`, `min-checkpoint-page-count`, `truncate-page-n` (v0.3: `max-checkpoint-page-count`) | [`DbConfig::checkpoint`] |
//! | `monitor-interval` | [`DbConfig::poll_interval`] (litevault: `poll-interval`) |
//! | `busy-timeout`, `restore-if-db-not-exists` | [`DbConfig::busy_timeout`], [`DbConfig::restore_if_db_not_exists`] |
//! | `shutdown-sync-timeout` | [`Config::shutdown_timeout`] (litevault: `shutdown-timeout`) |
//! | `addr` | [`Config::addr`] (litevault: also `http.addr`) |
//! | `exec` | [`Config::exec`] |
//! | `logging.level`, `logging.type` (`text`, `json`, `pretty`), `logging.stderr` | [`Config::logging`]; the `litevault` binary's log, under its `--log-level`/`--log-format` flags and `LITEVAULT_LOG` |
//! | `socket`, `mcp-addr`, `heartbeat-*`, `validation*`, `verify-compaction`, `shutdown-sync-interval`, `meta-path`, `sign-payload`, `require-content-md5`, `part-size`, `concurrency`, `auto-recover`, `logging.source` | ignored, with a warning |
//! | `storage-class`, `sse-kms-key-id`, `sse-customer-key`, `sse-customer-key-path`, `sse-customer-algorithm` | [`crate::replica::ReplicaLocation`]'s `storage_class` and `sse` (in the canonical URL), except the SSE-C key: [`ReplicaConfig::sse_customer_key`], [`ReplicaConfig::sse_customer_key_path`] |
//! | `age`, `sas-token`, SFTP/WebDAV/NATS keys | refused: ignoring them would change what is stored, or they serve replica types litevault lacks |
//! | v0.3 replica `retention`, `retention-check-interval`, `snapshot-interval` | ignored with a warning naming the v0.5 key (Litestream v0.5 ignores them silently) |
//!
//! litevault's own keys: `poll-interval` (top level or per db),
//! `truncate-wal-size` (top level or per db), `shutdown-timeout`,
//! `litestream-compat` (top level or per replica), `lease.ttl`, `http.addr`,
//! `http.readyz-max-lag`.
//!
//! `~/` in a path is `$HOME` (Litestream asks the user database, which
//! differs only where `$HOME` was changed).
//!
//! Differences from Litestream, on purpose: an unknown key is an error (with
//! the line and a suggestion) where Litestream ignores it; a duration without
//! a unit (`sync-interval: 1`) is an error where Litestream reads
//! nanoseconds; several replicas per database are allowed; logs go to
//! stderr unless `logging.stderr: false`, where Litestream's go to stdout
//! unless `logging.stderr: true` ([`defaults::LOG_TO_STDERR`]).
//!
//! # Where the file is
//!
//! `--config FILE`, else `$LITEVAULT_CONFIG`, else `./litevault.yml`, else
//! `/etc/litevault.yml` ([`locate`]).

use crate::defaults;
pub mod dirwatch;
pub mod env;
pub mod glob;
mod model;
pub mod raw;
mod resolve;
use crate::units;

use std::path::{Path, PathBuf};

pub use dirwatch::{DirChanges, DirWatch};
pub use model::{
    CheckpointPolicy, CompactionLevel, CompactionLevels, Config, DbConfig, DbSource, LeaseConfig,
    LogFormat, LogLevel, LoggingConfig, Origin, ReplicaConfig, ReplicaKind, RetentionPolicy,
    Secret, SnapshotPolicy, TruncateThreshold, canonical_url,
};
pub use resolve::{ExplainEntry, ParseContext};

/// A problem found in a configuration file: an error or a warning, with
/// where it is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The file (or `<string>`).
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: u32,
    /// 1-based column (0 when unknown).
    pub column: u32,
    /// The key concerned, as a path (`dbs[0].replica.sync-interval`), or
    /// empty.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Errors of the configuration.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No file was named and none of the default places holds one.
    #[error(
        "no config file: pass --config FILE, set LITEVAULT_CONFIG, or create one of {}",
        .tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound {
        /// The places looked at.
        tried: Vec<PathBuf>,
    },
    /// The file is not valid: every problem found, each with its line.
    #[error("{}", .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The problems.
        problems: Vec<Problem>,
        /// The warnings found before the errors.
        warnings: Vec<Problem>,
    },
    /// A `dir` source cannot be scanned.
    #[error("cannot scan the database directory {dir}: {source}")]
    Scan {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A `dir` source holds no database and is not watched (Litestream
    /// refuses to start too).
    #[error(
        "no SQLite database in {dir} matches {pattern:?}: fix `dir` or `pattern`, or set `watch: true` to wait for databases to appear"
    )]
    NoDatabases {
        /// The directory.
        dir: PathBuf,
        /// The pattern.
        pattern: String,
    },
    /// Two databases would replicate to the same place.
    #[error(
        "{first} and {second} would both replicate to {url}; give each database its own replica path"
    )]
    SharedReplica {
        /// The replica URL.
        url: String,
        /// One database.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
}

/// How a file is read.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Expand `$VAR` / `${VAR}` (Litestream's default; `--no-expand-env`
    /// turns it off).
    pub expand_env: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { expand_env: true }
    }
}

/// Finds the configuration file: `flag`, else `$LITEVAULT_CONFIG`, else the
/// first of [`defaults::CONFIG_PATHS`] that exists.
pub fn locate(flag: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(defaults::CONFIG_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let tried: Vec<PathBuf> = defaults::CONFIG_PATHS.iter().map(PathBuf::from).collect();
    tried
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(ConfigError::NotFound { tried })
}

impl Config {
    /// Reads and resolves a configuration file, expanding variables from the
    /// process environment, relative paths against the working directory.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let lookup = |k: &str| std::env::var(k).ok();
        let ctx = ParseContext {
            file: path.display().to_string(),
            cwd: &cwd,
            env: &lookup,
            pid: std::process::id(),
            expand_env: opts.expand_env,
        };
        let mut cfg = Config::parse(&text, &ctx)?;
        cfg.file = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Resolves a configuration from its text. Pure: the environment, the
    /// working directory and the process id come from `ctx`.
    pub fn parse(text: &str, ctx: &ParseContext<'_>) -> Result<Config, ConfigError> {
        resolve::parse(text, ctx)
    }

    /// Every setting with its value (secrets redacted) and its origin, in the
    /// order `config explain` prints them.
    pub fn explain(&self) -> Vec<ExplainEntry> {
        resolve::explain(self)
    }
}

#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;
