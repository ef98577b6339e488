//! From the raw file to the resolved model: validation, inheritance of the
//! top-level settings, defaults, and the origin of every value. Pure.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_saphyr::{Location, Spanned};

use super::env::{self, Expansion};
use super::glob::Pattern;
use super::model::*;
use super::raw::{RawConfig, RawDb, RawReplica, S};
use super::units::{ByteSize, GoDuration, format_duration, format_size};
use super::{ConfigError, Problem, defaults};
use crate::replica::{ReplicaLocation, Scheme};

/// What [`super::Config::parse`] needs from the outside world.
pub struct ParseContext<'a> {
    /// How the file is named in messages.
    pub file: String,
    /// The directory relative paths are resolved against (Litestream uses
    /// the working directory, not the file's).
    pub cwd: &'a Path,
    /// Environment lookup for `$VAR`, `~` (`HOME`) and the credentials
    /// `explain` reports.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The value of `$PID`.
    pub pid: u32,
    /// Whether `$VAR` references are expanded.
    pub expand_env: bool,
}

/// One line of `config explain`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExplainEntry {
    /// The key, as a path: `dbs[0].replicas[1].sync-interval`.
    pub key: String,
    /// The resolved value, secrets redacted.
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
}

struct R<'a, 'b> {
    ctx: &'a ParseContext<'b>,
    text: &'a str,
    expansion: &'a Expansion,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
    origins: BTreeMap<String, Origin>,
}

fn line_col(loc: Option<Location>) -> (u32, u32) {
    loc.map_or((0, 0), |l| (l.line() as u32, l.column() as u32))
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

pub(super) fn parse(text: &str, ctx: &ParseContext<'_>) -> Result<Config, ConfigError> {
    let expansion = if ctx.expand_env {
        env::expand(text, ctx.env, ctx.pid)
    } else {
        Expansion {
            text: text.to_string(),
            substitutions: Vec::new(),
        }
    };
    let mut r = R {
        ctx,
        text: &expansion.text,
        expansion: &expansion,
        errors: Vec::new(),
        warnings: Vec::new(),
        origins: BTreeMap::new(),
    };
    for s in &expansion.substitutions {
        if s.in_comment {
            continue;
        }
        if s.name == "$" {
            r.warn_at(
                s.line,
                "",
                "`$$` expands to an empty string (Litestream reads it as the variable `$`); a literal `$` cannot be written while expansion is on: pass --no-expand-env",
            );
        } else if !s.defined {
            let msg = format!(
                "${{{}}} is not set; it expands to an empty string (as in Litestream)",
                s.name
            );
            r.warn_at(s.line, "", &msg);
        }
    }
    let raw: RawConfig = if is_blank(&expansion.text) {
        RawConfig::default()
    } else {
        let opts = serde_saphyr::options! { with_snippet: false };
        match serde_saphyr::from_str_with_options::<RawConfig>(&expansion.text, opts) {
            Ok(raw) => raw,
            Err(e) => {
                let p = r.yaml_problem(&e);
                r.errors.push(p);
                return Err(ConfigError::Invalid {
                    problems: r.errors,
                    warnings: r.warnings,
                });
            }
        }
    };
    let cfg = r.resolve(&raw);
    if !r.errors.is_empty() {
        return Err(ConfigError::Invalid {
            problems: r.errors,
            warnings: r.warnings,
        });
    }
    let mut cfg = cfg;
    cfg.warnings = r.warnings;
    cfg.origins = r.origins;
    Ok(cfg)
}

/// The key named at the start of a line (`  - sync-interval: 1x` gives
/// `sync-interval`).
fn key_on_line(text: &str, line: u32) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)? as usize)?;
    let t = l.trim_start();
    let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
    let (k, _) = t.split_once(':')?;
    let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
    (!k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    .then(|| k.to_string())
}

/// The path of the key on a line of block-style YAML (`dbs[1].replica.url`),
/// found from the indentation of the lines before it. `None` when the line
/// names no key.
pub(super) fn yaml_path_at(text: &str, line: u32) -> Option<String> {
    #[derive(Clone)]
    struct Frame {
        col: usize,
        seg: String,
        index: bool,
    }
    let mut frames: Vec<Frame> = Vec::new();
    let mut counters: BTreeMap<String, usize> = BTreeMap::new();
    let path = |frames: &[Frame]| -> String {
        let mut out = String::new();
        for f in frames {
            if !f.index && !out.is_empty() {
                out.push('.');
            }
            out.push_str(&f.seg);
        }
        out
    };
    let mut last_key = None;
    for (n, l) in text.lines().enumerate().take(line as usize) {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let mut col = l.len() - trimmed.len();
        let mut content = trimmed;
        while content == "-" || content.starts_with("- ") {
            while frames
                .last()
                .is_some_and(|f| f.col > col || (f.col == col && f.index))
            {
                frames.pop();
            }
            let counter = format!("{}@{col}", path(&frames));
            let i = counters.get(&counter).map_or(0, |i| i + 1);
            counters.insert(counter, i);
            frames.push(Frame {
                col,
                seg: format!("[{i}]"),
                index: true,
            });
            let rest = content[1..].trim_start();
            col += content.len() - rest.len();
            content = rest;
        }
        last_key = None;
        if let Some((k, _)) = content.split_once(':') {
            let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
            if !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                while frames.last().is_some_and(|f| f.col >= col) {
                    frames.pop();
                }
                frames.push(Frame {
                    col,
                    seg: k.to_string(),
                    index: false,
                });
                if n + 1 == line as usize {
                    last_key = Some(path(&frames));
                }
            }
        }
    }
    last_key
}

/// The message for an unknown key, with a suggestion when one is obvious.
pub(super) fn unknown_key_message(field: &str, expected: &[&str]) -> String {
    let known_aliases: &[(&str, &str)] = &[
        (
            "directory",
            "write `dir` (Litestream's etc/litestream-directory-example.yml writes `directory`, which Litestream 0.5 itself rejects)",
        ),
        (
            "monitor_interval",
            "write `monitor-interval` or `poll-interval`",
        ),
        ("sync_interval", "write `sync-interval` (keys use hyphens)"),
    ];
    if let Some((_, hint)) = known_aliases.iter().find(|(k, _)| *k == field) {
        return format!("unknown key `{field}`: {hint}");
    }
    let normalized = field.replace('_', "-").to_ascii_lowercase();
    let best = expected
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&normalized, k), *k))
        .min();
    if let Some((d, k)) = best
        && d <= (field.len() / 3).max(2)
    {
        return format!("unknown key `{field}`; did you mean `{k}`?");
    }
    let sections = [
        ("top-level", RawConfig::keys()),
        ("database (`dbs` entry)", RawDb::keys()),
        ("replica", RawReplica::keys()),
    ];
    for (name, keys) in sections {
        if keys.iter().any(|k| k == &normalized) {
            return format!("unknown key `{field}` here: `{normalized}` is a {name} key");
        }
    }
    format!(
        "unknown key `{field}` (Litestream would silently ignore it; litevault refuses it so that a typo cannot turn into a default): remove it or fix its spelling"
    )
}

fn unsupported_message(key: &str) -> String {
    match key {
        "age" => {
            "age encryption is not supported (Litestream 0.5 refuses it too); remove it".into()
        }
        k if k.starts_with("sse-") => format!(
            "`{k}` (S3 server-side encryption with your keys) is not supported by litevault; ignoring it would store the data without that encryption, so remove it or keep this database on Litestream"
        ),
        "sas-token" => {
            "Azure SAS tokens are not supported; use `account-name` and `account-key`".into()
        }
        k => format!(
            "`{k}` configures SFTP, WebDAV or NATS replicas, which litevault does not support; litevault replicates to file, s3 (and S3-compatible services), gs and abs"
        ),
    }
}

fn endpoint_with_scheme(e: &str) -> String {
    if e.contains("://") {
        return e.to_string();
    }
    let host = e.split(['/', ':']).next().unwrap_or("");
    let local = host == "localhost"
        || host.starts_with("127.")
        || host.starts_with('[')
        || host == "0.0.0.0"
        || host.ends_with(".local")
        || host.ends_with(".internal");
    format!("{}://{e}", if local { "http" } else { "https" })
}

fn normalize(p: PathBuf) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl R<'_, '_> {
    fn problem(&self, line: u32, column: u32, key: &str, message: &str) -> Problem {
        Problem {
            file: self.ctx.file.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    fn error(&mut self, loc: Option<Location>, key: &str, message: &str) {
        let (l, c) = line_col(loc);
        let p = self.problem(l, c, key, message);
        self.errors.push(p);
    }

    fn warn(&mut self, loc: Option<Location>, key: &str, message: &str) {
        let (l, c) = line_col(loc);
        let p = self.problem(l, c, key, message);
        self.warnings.push(p);
    }

    fn warn_at(&mut self, line: u32, key: &str, message: &str) {
        let p = self.problem(line, 0, key, message);
        self.warnings.push(p);
    }

    fn yaml_problem(&self, e: &serde_saphyr::Error) -> Problem {
        // Errors found by the YAML layer name the key by its path, found from
        // the indentation.
        let e = e.without_snippet();
        let (line, column) = line_col(e.location());
        match e {
            serde_saphyr::Error::SerdeUnknownField {
                field, expected, ..
            } => {
                let key = yaml_path_at(self.text, line)
                    .filter(|k| k.ends_with(field.as_str()))
                    .unwrap_or_else(|| field.clone());
                self.problem(line, column, &key, &unknown_key_message(field, expected))
            }
            other => {
                let mut msg = other.to_string();
                if let Some(i) = msg.rfind(" at line ") {
                    msg.truncate(i);
                }
                let key = yaml_path_at(self.text, line)
                    .or_else(|| key_on_line(self.text, line))
                    .unwrap_or_default();
                self.problem(line, column, &key, &msg)
            }
        }
    }

    fn has_env(&self, line: u32) -> Vec<String> {
        self.expansion
            .on_line(line)
            .filter(|s| !s.in_comment)
            .map(|s| s.name.clone())
            .collect()
    }

    fn origin_at(&self, loc: Location) -> Origin {
        let line = loc.line() as u32;
        let vars = self.has_env(line);
        if vars.is_empty() {
            Origin::File { line }
        } else {
            Origin::Env { line, vars }
        }
    }

    /// A value of the file, its origin recorded under `key`.
    fn take<T: Clone>(&mut self, key: &str, v: &S<T>) -> Option<(T, Location)> {
        let s = v.as_ref()?;
        let o = self.origin_at(s.referenced);
        self.origins.insert(key.to_string(), o);
        Some((s.value.clone(), s.referenced))
    }

    /// A string of the file; an empty string (often an unset `$VAR`) counts
    /// as absent, as in Litestream.
    fn take_str(&mut self, key: &str, v: &S<String>) -> Option<(String, Location)> {
        if v.as_ref().is_some_and(|s| s.value.trim().is_empty()) {
            return None;
        }
        self.take(key, v)
    }

    /// A value set locally, else inherited from the top level.
    fn inherit<T: Clone>(
        &mut self,
        key: &str,
        local: &S<T>,
        global: &S<T>,
    ) -> Option<(T, Location)> {
        if let Some(v) = self.take(key, local) {
            return Some(v);
        }
        let g = global.as_ref()?;
        let line = g.referenced.line() as u32;
        let env = !self.has_env(line).is_empty();
        self.origins
            .insert(key.to_string(), Origin::Global { line, env });
        Some((g.value.clone(), g.referenced))
    }

    fn inherit_str(
        &mut self,
        key: &str,
        local: &S<String>,
        global: &S<String>,
    ) -> Option<(String, Location)> {
        let empty = |v: &S<String>| v.as_ref().is_some_and(|s| s.value.trim().is_empty());
        let local_none: S<String> = None;
        let local = if empty(local) { &local_none } else { local };
        let global = if empty(global) { &local_none } else { global };
        self.inherit(key, local, global)
    }

    fn positive(
        &mut self,
        key: &str,
        v: Option<(GoDuration, Location)>,
        default: Duration,
    ) -> Duration {
        match v {
            Some((d, loc)) if d.0.is_zero() => {
                self.error(Some(loc), key, "must be greater than zero; write e.g. 1s");
                default
            }
            Some((d, _)) => d.0,
            None => default,
        }
    }

    fn ignored_and_unsupported(
        &mut self,
        prefix: &str,
        ignored: Vec<(String, Location)>,
        unsupported: Vec<(String, Location)>,
    ) {
        for (k, loc) in ignored {
            let key = join(prefix, &k);
            self.warn(
                Some(loc),
                &key,
                "a Litestream setting litevault does not use; ignored",
            );
        }
        for (k, loc) in unsupported {
            let key = join(prefix, &k);
            self.error(Some(loc), &key, &unsupported_message(&k));
        }
    }

    fn abs_path(&self, raw: &str, strip_sqlite: bool) -> PathBuf {
        let mut s = raw.trim();
        if strip_sqlite {
            s = s
                .strip_prefix("sqlite3://")
                .or_else(|| s.strip_prefix("sqlite://"))
                .unwrap_or(s);
        }
        let p = if s == "~" || s.starts_with("~/") {
            let home = (self.ctx.env)("HOME").unwrap_or_else(|| "/".into());
            PathBuf::from(home).join(s.trim_start_matches('~').trim_start_matches('/'))
        } else {
            PathBuf::from(s)
        };
        normalize(if p.is_absolute() {
            p
        } else {
            self.ctx.cwd.join(p)
        })
    }

    fn resolve(&mut self, raw: &RawConfig) -> Config {
        self.ignored_and_unsupported("", raw.ignored_keys(), raw.unsupported_keys());

        // Compaction levels.
        let mut compaction = CompactionLevels::default();
        if let Some(levels) = &raw.levels {
            let mut out = Vec::new();
            if levels.value.len() > 8 {
                self.error(
                    Some(levels.referenced),
                    "levels",
                    "at most 8 levels (L1 to L8); level 9 is the snapshot level, set by `snapshot`",
                );
            }
            for (i, l) in levels.value.iter().enumerate() {
                let key = format!("levels[{i}]");
                self.ignored_and_unsupported(
                    &key,
                    l.value.ignored_keys(),
                    l.value.unsupported_keys(),
                );
                if let Some((n, loc)) = self.take(&format!("{key}.level"), &l.value.level)
                    && usize::from(n) != i + 1
                {
                    let msg = format!(
                        "entry {} of `levels` is L{}, not L{n}: levels are listed in order from L1, so drop `level` or reorder",
                        i + 1,
                        i + 1
                    );
                    self.error(Some(loc), &format!("{key}.level"), &msg);
                }
                let ikey = format!("{key}.interval");
                match self.take(&ikey, &l.value.interval) {
                    None => self.error(
                        Some(l.referenced),
                        &ikey,
                        "missing; write e.g. `interval: 30s`",
                    ),
                    Some((d, loc)) if d.0.is_zero() => self.error(
                        Some(loc),
                        &ikey,
                        "must be greater than zero; write e.g. 30s",
                    ),
                    Some((d, _)) => out.push(CompactionLevel {
                        // Past L8 the file is already refused (above).
                        level: u8::try_from(i + 1).unwrap_or(u8::MAX),
                        interval: d.0,
                    }),
                }
            }
            if let Some(w) = out.windows(2).find(|w| w[1].interval < w[0].interval) {
                let msg = format!(
                    "L{} compacts more often ({}) than L{} ({}); higher levels usually have longer intervals",
                    w[1].level,
                    format_duration(w[1].interval),
                    w[0].level,
                    format_duration(w[0].interval)
                );
                self.warn(Some(levels.referenced), "levels", &msg);
            }
            compaction = CompactionLevels(out);
        }

        // Snapshots, retention.
        let mut snapshot = SnapshotPolicy::default();
        if let Some(s) = &raw.snapshot {
            let v = self.take("snapshot.interval", &s.value.interval);
            snapshot.interval = self.positive("snapshot.interval", v, snapshot.interval);
            let v = self.take("snapshot.retention", &s.value.retention);
            snapshot.retention = self.positive("snapshot.retention", v, snapshot.retention);
        }
        let mut retention = RetentionPolicy::default();
        let v = self.take("l0-retention", &raw.l0_retention);
        retention.l0_retention = self.positive("l0-retention", v, retention.l0_retention);
        let v = self.take(
            "l0-retention-check-interval",
            &raw.l0_retention_check_interval,
        );
        retention.l0_retention_check_interval = self.positive(
            "l0-retention-check-interval",
            v,
            retention.l0_retention_check_interval,
        );
        if let Some(ret) = &raw.retention
            && let Some((e, _)) = self.take("retention.enabled", &ret.value.enabled)
        {
            retention.enabled = e;
        }

        // Shutdown, lease, HTTP, logging, exec.
        let shutdown_timeout = match (&raw.shutdown_timeout, &raw.shutdown_sync_timeout) {
            (Some(_), Some(b)) => {
                self.error(
                    Some(b.referenced),
                    "shutdown-sync-timeout",
                    "`shutdown-timeout` is set too; keep one of them (they are the same setting)",
                );
                defaults::SHUTDOWN_TIMEOUT
            }
            (a, b) => {
                let v = if a.is_some() { a } else { b };
                self.take("shutdown-timeout", v)
                    .map_or(defaults::SHUTDOWN_TIMEOUT, |(d, _)| d.0)
            }
        };
        let mut lease = LeaseConfig {
            ttl: defaults::LEASE_TTL,
        };
        if let Some(l) = &raw.lease {
            let v = self.take("lease.ttl", &l.value.ttl);
            lease.ttl = self.positive("lease.ttl", v, lease.ttl);
        }
        let mut addr = self.take_str("addr", &raw.addr).map(|(a, _)| a);
        let mut readyz_max_lag = defaults::READYZ_MAX_LAG;
        if let Some(h) = &raw.http {
            if let Some((a, loc)) = self.take_str("addr", &h.value.addr) {
                if addr.is_some() {
                    self.error(
                        Some(loc),
                        "http.addr",
                        "the top-level `addr` is set too; keep one of them (they are the same setting)",
                    );
                }
                addr = Some(a);
            }
            let v = self.take("http.readyz-max-lag", &h.value.readyz_max_lag);
            readyz_max_lag = self.positive("http.readyz-max-lag", v, readyz_max_lag);
        }
        let exec = self.take_str("exec", &raw.exec).map(|(e, _)| e);
        let logging = self.logging(raw);

        // Databases.
        let mut dbs = Vec::new();
        let mut db_locs = Vec::new();
        match &raw.dbs {
            None => {}
            Some(list) => {
                for (i, db) in list.iter().enumerate() {
                    if let Some(d) = self.db(i, db, raw, &compaction, &snapshot, &retention) {
                        dbs.push(d);
                        db_locs.push(db.referenced);
                    }
                }
            }
        }
        if raw.dbs.as_ref().is_none_or(|d| d.is_empty()) {
            self.warn_at(0, "dbs", "no databases are listed: add `dbs:` with `- path: /path/to/app.db` and a `replica:`");
        }
        self.cross_checks(&dbs, &db_locs);

        Config {
            file: None,
            dbs,
            addr,
            readyz_max_lag,
            exec,
            logging,
            shutdown_timeout,
            lease,
            compaction,
            snapshot,
            retention,
            warnings: Vec::new(),
            origins: BTreeMap::new(),
        }
    }

    fn logging(&mut self, raw: &RawConfig) -> LoggingConfig {
        let mut l = LoggingConfig {
            level: LogLevel::Info,
            format: LogFormat::Text,
            stderr: false,
        };
        let Some(lg) = &raw.logging else {
            return l;
        };
        self.ignored_and_unsupported(
            "logging",
            lg.value.ignored_keys(),
            lg.value.unsupported_keys(),
        );
        if let Some((s, loc)) = self.take_str("logging.level", &lg.value.level) {
            l.level = match s.to_ascii_lowercase().as_str() {
                "trace" => LogLevel::Trace,
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warn" | "warning" => LogLevel::Warn,
                "error" => LogLevel::Error,
                _ => {
                    let msg =
                        format!("{s:?} is not a level; use trace, debug, info, warn or error");
                    self.error(Some(loc), "logging.level", &msg);
                    LogLevel::Info
                }
            };
        }
        if let Some((s, loc)) = self.take_str("logging.type", &lg.value.r#type) {
            l.format = match s.to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                "pretty" => LogFormat::Pretty,
                _ => {
                    let msg = format!("{s:?} is not a log type; use text or json");
                    self.error(Some(loc), "logging.type", &msg);
                    LogFormat::Text
                }
            };
        }
        if let Some((b, _)) = self.take("logging.stderr", &lg.value.stderr) {
            l.stderr = b;
        }
        l
    }

    fn db(
        &mut self,
        i: usize,
        sdb: &Spanned<RawDb>,
        g: &RawConfig,
        compaction: &CompactionLevels,
        snapshot: &SnapshotPolicy,
        retention: &RetentionPolicy,
    ) -> Option<DbConfig> {
        let key = format!("dbs[{i}]");
        let db = &sdb.value;
        let errors_before = self.errors.len();
        self.ignored_and_unsupported(&key, db.ignored_keys(), db.unsupported_keys());

        // Source.
        let path = self.take_str(&format!("{key}.path"), &db.path);
        let dir = self.take_str(&format!("{key}.dir"), &db.dir);
        let source = match (path, dir) {
            (Some(_), Some((_, loc))) => {
                self.error(Some(loc), &format!("{key}.dir"), "give either `path` (one database) or `dir` (a directory of databases), not both");
                None
            }
            (None, None) => {
                self.error(
                    Some(sdb.referenced),
                    &key,
                    "names no database: add `path: /path/to/app.db` (or `dir:` with `pattern:`)",
                );
                None
            }
            (Some((p, _)), None) => {
                for (k, v) in [("recursive", &db.recursive), ("watch", &db.watch)] {
                    if let Some(s) = v {
                        self.error(
                            Some(s.referenced),
                            &format!("{key}.{k}"),
                            "only applies to a `dir` source",
                        );
                    }
                }
                if let Some(s) = &db.pattern {
                    self.error(
                        Some(s.referenced),
                        &format!("{key}.pattern"),
                        "only applies to a `dir` source",
                    );
                }
                Some(DbSource::Path(self.abs_path(&p, true)))
            }
            (None, Some((d, dloc))) => {
                let pattern = match self.take_str(&format!("{key}.pattern"), &db.pattern) {
                    None => {
                        self.error(
                            Some(dloc),
                            &format!("{key}.pattern"),
                            "a `dir` source needs a `pattern`, e.g. pattern: \"*.db\"",
                        );
                        None
                    }
                    Some((p, loc)) => match Pattern::new(&p) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            self.error(Some(loc), &format!("{key}.pattern"), &e);
                            None
                        }
                    },
                };
                let recursive = self
                    .take(&format!("{key}.recursive"), &db.recursive)
                    .is_some_and(|(b, _)| b);
                let watch = self
                    .take(&format!("{key}.watch"), &db.watch)
                    .is_some_and(|(b, _)| b);
                pattern.map(|pattern| DbSource::Dir {
                    dir: self.abs_path(&d, false),
                    pattern,
                    recursive,
                    watch,
                })
            }
        };

        // Polling and checkpoints.
        let pkey = format!("{key}.poll-interval");
        let poll = match (&db.poll_interval, &db.monitor_interval) {
            (Some(_), Some(m)) => {
                self.error(
                    Some(m.referenced),
                    &format!("{key}.monitor-interval"),
                    "`poll-interval` is set too; keep one of them (they are the same setting)",
                );
                None
            }
            (Some(_), None) => self.inherit(&pkey, &db.poll_interval, &g.poll_interval),
            (None, m) => self.inherit(&pkey, m, &g.poll_interval),
        };
        let poll_interval = self.positive(&pkey, poll, defaults::POLL_INTERVAL);
        let checkpoint_interval = self
            .take(
                &format!("{key}.checkpoint-interval"),
                &db.checkpoint_interval,
            )
            .map_or(defaults::CHECKPOINT_INTERVAL, |(d, _)| d.0);
        let min_pages = self
            .take(
                &format!("{key}.min-checkpoint-page-count"),
                &db.min_checkpoint_page_count,
            )
            .map_or(defaults::MIN_CHECKPOINT_PAGES, |(n, _)| n);
        let truncate = self.truncate(&key, db, g);
        let busy_timeout = self
            .take(&format!("{key}.busy-timeout"), &db.busy_timeout)
            .map_or(defaults::BUSY_TIMEOUT, |(d, _)| d.0);
        let restore_if_db_not_exists = self
            .take(
                &format!("{key}.restore-if-db-not-exists"),
                &db.restore_if_db_not_exists,
            )
            .is_some_and(|(b, _)| b);

        // Snapshot: per database, else the top level, else the default.
        let mut snap = *snapshot;
        for (field, name) in [("interval", 0), ("retention", 1)] {
            let gkey = format!("snapshot.{field}");
            let dkey = format!("{key}.snapshot.{field}");
            let local = db.snapshot.as_ref().and_then(|s| {
                if name == 0 {
                    s.value.interval.clone()
                } else {
                    s.value.retention.clone()
                }
            });
            if let Some(v) = self.take(&dkey, &local) {
                let d = self.positive(&dkey, Some(v), Duration::from_secs(1));
                if name == 0 {
                    snap.interval = d
                } else {
                    snap.retention = d
                }
            } else if let Some(o) = self.origins.get(&gkey).cloned() {
                let o = match o {
                    Origin::File { line } => Origin::Global { line, env: false },
                    Origin::Env { line, .. } => Origin::Global { line, env: true },
                    other => other,
                };
                self.origins.insert(dkey, o);
            }
        }

        // Replicas.
        let list: Vec<(String, &Spanned<RawReplica>)> = match (&db.replica, &db.replicas) {
            (Some(_), Some(rs)) => {
                self.error(
                    Some(rs.referenced),
                    &format!("{key}.replicas"),
                    "give either `replica` (one) or `replicas` (a list), not both",
                );
                Vec::new()
            }
            (Some(r), None) => vec![(format!("{key}.replica"), r)],
            (None, Some(rs)) => {
                if rs.value.is_empty() {
                    self.error(
                        Some(rs.referenced),
                        &format!("{key}.replicas"),
                        "is empty: list at least one replica, e.g. `- url: s3://bucket/app`",
                    );
                }
                rs.value
                    .iter()
                    .enumerate()
                    .map(|(j, r)| (format!("{key}.replicas[{j}]"), r))
                    .collect()
            }
            (None, None) => {
                self.error(Some(sdb.referenced), &key, "has no replica: add `replica:` with a `url`, e.g. s3://bucket/app or file:///var/backups/app");
                Vec::new()
            }
        };
        let mut replicas = Vec::new();
        for (rkey, r) in list {
            if let Some(rc) = self.replica(&rkey, r, g) {
                replicas.push(rc);
            }
        }

        if self.errors.len() > errors_before {
            return None;
        }
        Some(DbConfig {
            key,
            source: source?,
            replicas,
            poll_interval,
            checkpoint: CheckpointPolicy {
                interval: checkpoint_interval,
                min_pages,
                truncate,
            },
            busy_timeout,
            compaction: compaction.clone(),
            snapshot: snap,
            retention: *retention,
            restore_if_db_not_exists,
        })
    }

    fn truncate(&mut self, key: &str, db: &RawDb, g: &RawConfig) -> TruncateThreshold {
        let set: Vec<(&str, Location)> = [
            (
                "truncate-page-n",
                db.truncate_page_n.as_ref().map(|s| s.referenced),
            ),
            (
                "max-checkpoint-page-count",
                db.max_checkpoint_page_count.as_ref().map(|s| s.referenced),
            ),
            (
                "truncate-wal-size",
                db.truncate_wal_size.as_ref().map(|s| s.referenced),
            ),
        ]
        .into_iter()
        .filter_map(|(k, l)| l.map(|l| (k, l)))
        .collect();
        if set.len() > 1 {
            let msg = format!(
                "`{}` and `{}` both set the TRUNCATE checkpoint threshold; keep one",
                set[0].0, set[1].0
            );
            self.error(Some(set[1].1), &format!("{key}.{}", set[1].0), &msg);
        }
        let pkey = format!("{key}.truncate-page-n");
        if let Some((n, _)) = self.take(&pkey, &db.truncate_page_n) {
            return TruncateThreshold::Pages(n);
        }
        if let Some((n, loc)) = self.take(&pkey, &db.max_checkpoint_page_count) {
            self.warn(Some(loc), &format!("{key}.max-checkpoint-page-count"), "a Litestream v0.3 key (Litestream v0.5 ignores it); read as `truncate-page-n`, its v0.5 name");
            return TruncateThreshold::Pages(n);
        }
        let skey = format!("{key}.truncate-wal-size");
        let v: Option<(ByteSize, Location)> =
            self.inherit(&skey, &db.truncate_wal_size, &g.truncate_wal_size);
        TruncateThreshold::Bytes(v.map_or(defaults::TRUNCATE_WAL_BYTES, |(b, _)| b.0))
    }

    fn replica(
        &mut self,
        key: &str,
        sr: &Spanned<RawReplica>,
        g: &RawConfig,
    ) -> Option<ReplicaConfig> {
        let r = &sr.value;
        let errors_before = self.errors.len();
        self.ignored_and_unsupported(key, r.ignored_keys(), r.unsupported_keys());
        for (k, v, instead) in [
            (
                "retention",
                &r.retention,
                "the top-level `snapshot.retention` (and `l0-retention`)",
            ),
            (
                "retention-check-interval",
                &r.retention_check_interval,
                "the top-level `l0-retention-check-interval`",
            ),
            (
                "snapshot-interval",
                &r.snapshot_interval,
                "the top-level `snapshot.interval`",
            ),
        ] {
            if let Some(s) = v {
                let msg = format!(
                    "a Litestream v0.3 replica key, ignored (Litestream v0.5 ignores it too); use {instead}"
                );
                self.warn(Some(s.referenced), &format!("{key}.{k}"), &msg);
            }
        }
        let url = self.take_str(&format!("{key}.url"), &r.url);
        let ty = self.take_str(&format!("{key}.type"), &r.r#type);
        let url_scheme = url
            .as_ref()
            .and_then(|(u, _)| u.split_once("://").map(|(s, _)| s.to_ascii_lowercase()));
        let kind_name = match (&url_scheme, &ty) {
            (Some(s), Some((t, tloc))) => {
                if !t.eq_ignore_ascii_case(s) {
                    let msg = format!(
                        "ignored: the url says `{s}` (the url's scheme decides, as in Litestream)"
                    );
                    self.warn(Some(*tloc), &format!("{key}.type"), &msg);
                }
                s.clone()
            }
            (Some(s), None) => s.clone(),
            (None, Some((t, _))) => t.to_ascii_lowercase(),
            (None, None) => "file".into(),
        };
        let kind = match kind_name.as_str() {
            "file" => ReplicaKind::File,
            "s3" => ReplicaKind::S3,
            "gs" | "gcs" => ReplicaKind::Gs,
            "abs" | "az" | "azure" => ReplicaKind::Abs,
            other => {
                let loc = url
                    .as_ref()
                    .map(|(_, l)| *l)
                    .or(ty.as_ref().map(|(_, l)| *l));
                let msg = format!(
                    "replica type `{other}` is not supported by litevault; use file, s3 (AWS or any S3-compatible service), gs or abs"
                );
                self.error(loc, &format!("{key}.type"), &msg);
                return None;
            }
        };
        self.origins.insert(
            format!("{key}.type"),
            self.origins
                .get(&format!("{key}.url"))
                .or_else(|| self.origins.get(&format!("{key}.type")))
                .cloned()
                .unwrap_or(Origin::Default),
        );
        if let Some((_, _)) = &url {
            for (k, v) in [("path", &r.path), ("bucket", &r.bucket)] {
                if let Some(s) = v.as_ref().filter(|s| !s.value.trim().is_empty()) {
                    let msg = format!(
                        "give either `url` or `{k}`, not both (the url already names the {k})"
                    );
                    self.error(Some(s.referenced), &format!("{key}.{k}"), &msg);
                }
            }
        }
        let path = self.take_str(&format!("{key}.path"), &r.path);
        let bucket = if url.is_none() {
            self.inherit_str(&format!("{key}.bucket"), &r.bucket, &g.bucket)
        } else {
            None
        };
        let endpoint = self.inherit_str(&format!("{key}.endpoint"), &r.endpoint, &g.endpoint);
        let region = self.inherit_str(&format!("{key}.region"), &r.region, &g.region);
        let force_path_style = self.inherit(
            &format!("{key}.force-path-style"),
            &r.force_path_style,
            &g.force_path_style,
        );
        let skip_verify = self.inherit(
            &format!("{key}.skip-verify"),
            &r.skip_verify,
            &g.skip_verify,
        );
        let account_name = self.inherit_str(
            &format!("{key}.account-name"),
            &r.account_name,
            &g.account_name,
        );
        let account_key = self.inherit_str(
            &format!("{key}.account-key"),
            &r.account_key,
            &g.account_key,
        );
        let akid = self.inherit_str(
            &format!("{key}.access-key-id"),
            &r.access_key_id,
            &g.access_key_id,
        );
        let secret = self.inherit_str(
            &format!("{key}.secret-access-key"),
            &r.secret_access_key,
            &g.secret_access_key,
        );
        let skey = format!("{key}.sync-interval");
        let sync = self.inherit(&skey, &r.sync_interval, &g.sync_interval);
        let sync_interval = self.positive(&skey, sync, defaults::SYNC_INTERVAL);
        let litestream_compat = self
            .inherit(
                &format!("{key}.litestream-compat"),
                &r.litestream_compat,
                &g.litestream_compat,
            )
            .map_or(defaults::LITESTREAM_COMPAT, |(b, _)| b);
        let name = self
            .take_str(&format!("{key}.name"), &r.name)
            .map(|(n, _)| n);

        let url_key = format!("{key}.url");
        let location = match kind {
            ReplicaKind::File => {
                let dir = match (&url, &path) {
                    (Some((u, loc)), _) => {
                        if u.contains("://") {
                            match ReplicaLocation::parse(u) {
                                Ok(l) => Some(l.path),
                                Err(e) => {
                                    self.error(Some(*loc), &url_key, &e.to_string());
                                    None
                                }
                            }
                        } else {
                            Some(u.clone())
                        }
                    }
                    (None, Some((p, _))) => Some(p.clone()),
                    (None, None) => {
                        self.error(
                            Some(sr.referenced),
                            key,
                            "a file replica needs `path` (a directory) or `url: file:///dir`",
                        );
                        None
                    }
                };
                dir.map(|d| ReplicaLocation {
                    scheme: Scheme::File,
                    bucket: String::new(),
                    path: self.abs_path(&d, false).to_string_lossy().into_owned(),
                    endpoint: None,
                    region: None,
                    force_path_style: false,
                    skip_verify: false,
                    account: None,
                })
            }
            _ => {
                let base = if let Some((u, loc)) = &url {
                    let u = self.strip_litestream_query(u, *loc, &url_key);
                    // Provider hostnames (bucket.s3.REGION.amazonaws.com...)
                    // are read by the one URL grammar, as on the command line.
                    match ReplicaLocation::parse(&u) {
                        Ok(l) => Some(l),
                        Err(e) => {
                            self.error(Some(*loc), &url_key, &e.to_string());
                            None
                        }
                    }
                } else {
                    match &bucket {
                        None => {
                            let msg = format!(
                                "a {} replica needs `bucket` (or a `url` such as {}://bucket/path)",
                                kind.name(),
                                kind.name()
                            );
                            self.error(Some(sr.referenced), &format!("{key}.bucket"), &msg);
                            None
                        }
                        Some((b, _)) => Some(ReplicaLocation {
                            scheme: match kind {
                                ReplicaKind::S3 => Scheme::S3,
                                ReplicaKind::Gs => Scheme::Gcs,
                                _ => Scheme::Azure,
                            },
                            bucket: b.clone(),
                            path: path
                                .as_ref()
                                .map(|(p, _)| p.trim_matches('/').to_string())
                                .unwrap_or_default(),
                            endpoint: None,
                            region: None,
                            force_path_style: false,
                            skip_verify: false,
                            account: None,
                        }),
                    }
                };
                base.map(|mut l| {
                    // gs and abs take an endpoint too (an emulator, a private endpoint).
                    if let Some((e, _)) = &endpoint {
                        l.endpoint = Some(endpoint_with_scheme(e));
                    }
                    if kind == ReplicaKind::S3 {
                        if let Some((rg, _)) = &region {
                            l.region = Some(rg.clone());
                        }
                        if let Some((f, floc)) = force_path_style {
                            if !f && l.endpoint.is_some() {
                                self.warn(Some(floc), &format!("{key}.force-path-style"), "litevault always uses path-style addressing with a custom endpoint; `false` has no effect");
                            }
                            l.force_path_style = f;
                        }
                        if let Some((s, _)) = skip_verify {
                            l.skip_verify = s;
                        }
                    }
                    if kind == ReplicaKind::Abs
                        && let Some((a, _)) = &account_name
                    {
                        l.account = Some(a.clone());
                    }
                    l
                })
            }
        };
        let location = location?;
        if url.is_none() {
            let o = self
                .origins
                .get(&format!("{key}.path"))
                .or_else(|| self.origins.get(&format!("{key}.bucket")))
                .cloned()
                .unwrap_or(Origin::Default);
            self.origins.insert(url_key.clone(), o);
        }
        let canonical = canonical_url(&location);
        // The location is what the replica module makes of the canonical URL,
        // so that `location` and `open()` always agree.
        let location = match ReplicaLocation::parse(&canonical) {
            Ok(l) => l,
            Err(e) => {
                let loc = url.as_ref().map(|(_, l)| *l).unwrap_or(sr.referenced);
                self.error(Some(loc), &url_key, &e.to_string());
                location
            }
        };

        // Credentials.
        let (access_key_id, secret_access_key) = match (akid, secret) {
            (Some((a, _)), Some((s, _))) => (Some(a), Some(Secret::new(s))),
            (None, None) => (None, None),
            (Some((_, loc)), None) | (None, Some((_, loc))) => {
                self.error(Some(loc), &format!("{key}.access-key-id"), "set both `access-key-id` and `secret-access-key`, or neither to use the environment (LITEVAULT_*, LITESTREAM_* or AWS_* variables)");
                (None, None)
            }
        };
        if kind == ReplicaKind::S3 && access_key_id.is_none() {
            for (field, vars) in [
                (
                    "access-key-id",
                    [
                        "LITEVAULT_ACCESS_KEY_ID",
                        "LITESTREAM_ACCESS_KEY_ID",
                        "AWS_ACCESS_KEY_ID",
                    ],
                ),
                (
                    "secret-access-key",
                    [
                        "LITEVAULT_SECRET_ACCESS_KEY",
                        "LITESTREAM_SECRET_ACCESS_KEY",
                        "AWS_SECRET_ACCESS_KEY",
                    ],
                ),
            ] {
                if let Some(var) = vars
                    .iter()
                    .find(|v| (self.ctx.env)(v).is_some_and(|x| !x.is_empty()))
                {
                    self.origins.insert(
                        format!("{key}.{field}"),
                        Origin::ProcessEnv {
                            var: var.to_string(),
                        },
                    );
                }
            }
        }
        if kind != ReplicaKind::S3
            && let Some(s) = r.access_key_id.as_ref().or(r.secret_access_key.as_ref())
        {
            self.warn(
                Some(s.referenced),
                &format!("{key}.access-key-id"),
                "S3 credentials on a non-S3 replica are ignored",
            );
        }
        let account_key = if kind == ReplicaKind::Abs {
            account_key.map(|(k, _)| Secret::new(k))
        } else {
            None
        };

        if self.errors.len() > errors_before {
            return None;
        }
        Some(ReplicaConfig {
            key: key.to_string(),
            name,
            kind,
            url: canonical,
            location,
            access_key_id,
            secret_access_key,
            account_key,
            sync_interval,
            litestream_compat,
        })
    }

    /// Drops the URL query parameters Litestream knows and litevault has no
    /// use for (`signPayload`, `requireContentMD5`), with a warning.
    fn strip_litestream_query(&mut self, u: &str, loc: Location, key: &str) -> String {
        let Some((base, query)) = u.split_once('?') else {
            return u.to_string();
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let name = pair.split('=').next().unwrap_or("");
            if matches!(
                name,
                "signPayload" | "sign-payload" | "requireContentMD5" | "require-content-md5"
            ) {
                let msg = format!(
                    "query parameter `{name}` is a Litestream setting litevault does not use; ignored"
                );
                self.warn(Some(loc), key, &msg);
            } else if !pair.is_empty() {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    }

    fn cross_checks(&mut self, dbs: &[DbConfig], locs: &[Location]) {
        for (j, db) in dbs.iter().enumerate() {
            if let Some(i) = dbs[..j].iter().position(|d| d.source == db.source) {
                let msg = format!(
                    "lists the same database as {} (line {}); list it once, with several replicas if needed",
                    dbs[i].key,
                    locs[i].line()
                );
                self.warn(Some(locs[j]), &db.key, &msg);
            }
        }
        let mut seen: Vec<(String, &ReplicaConfig, bool)> = Vec::new();
        for db in dbs {
            let is_dir = matches!(db.source, DbSource::Dir { .. });
            for r in &db.replicas {
                let id = r.identity();
                if let Some((_, first, _)) = seen.iter().find(|(k, _, d)| *k == id && *d == is_dir)
                {
                    let line = match self.origins.get(&format!("{}.url", first.key)) {
                        Some(
                            Origin::File { line }
                            | Origin::Env { line, .. }
                            | Origin::Global { line, .. },
                        ) => format!(" (line {line})"),
                        _ => String::new(),
                    };
                    let msg = format!(
                        "replicates to {}, as {} does{line}; two writers on one replica destroy each other's history: give each its own path",
                        r.url, first.key
                    );
                    let (l, _) = match self.origins.get(&format!("{}.url", r.key)) {
                        Some(
                            Origin::File { line }
                            | Origin::Env { line, .. }
                            | Origin::Global { line, .. },
                        ) => (*line, 0),
                        _ => (0, 0),
                    };
                    let p = self.problem(l, 0, &format!("{}.url", r.key), &msg);
                    self.errors.push(p);
                } else {
                    seen.push((id, r, is_dir));
                }
            }
        }
    }
}

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

pub(super) fn explain(cfg: &Config) -> Vec<ExplainEntry> {
    let mut out = Vec::new();
    let mut push = |key: String, value: String| {
        let origin = cfg.origin(&key);
        out.push(ExplainEntry { key, value, origin });
    };
    let d = format_duration;
    push(
        "addr".into(),
        cfg.addr
            .clone()
            .unwrap_or_else(|| "(none: no HTTP server)".into()),
    );
    push("http.readyz-max-lag".into(), d(cfg.readyz_max_lag));
    push(
        "exec".into(),
        cfg.exec.clone().unwrap_or_else(|| "(none)".into()),
    );
    push(
        "logging.level".into(),
        format!("{:?}", cfg.logging.level).to_lowercase(),
    );
    push(
        "logging.type".into(),
        format!("{:?}", cfg.logging.format).to_lowercase(),
    );
    push("logging.stderr".into(), cfg.logging.stderr.to_string());
    push("shutdown-timeout".into(), d(cfg.shutdown_timeout));
    push("lease.ttl".into(), d(cfg.lease.ttl));
    for (i, l) in cfg.compaction.0.iter().enumerate() {
        push(
            format!("levels[{i}].interval"),
            format!("L{} {}", l.level, d(l.interval)),
        );
    }
    push("snapshot.interval".into(), d(cfg.snapshot.interval));
    push("snapshot.retention".into(), d(cfg.snapshot.retention));
    push("l0-retention".into(), d(cfg.retention.l0_retention));
    push(
        "l0-retention-check-interval".into(),
        d(cfg.retention.l0_retention_check_interval),
    );
    push(
        "retention.enabled".into(),
        cfg.retention.enabled.to_string(),
    );
    for db in &cfg.dbs {
        let k = &db.key;
        match &db.source {
            DbSource::Path(p) => push(format!("{k}.path"), p.display().to_string()),
            DbSource::Dir {
                dir,
                pattern,
                recursive,
                watch,
            } => {
                push(format!("{k}.dir"), dir.display().to_string());
                push(format!("{k}.pattern"), pattern.to_string());
                push(format!("{k}.recursive"), recursive.to_string());
                push(format!("{k}.watch"), watch.to_string());
            }
        }
        push(format!("{k}.poll-interval"), d(db.poll_interval));
        push(
            format!("{k}.checkpoint-interval"),
            d(db.checkpoint.interval),
        );
        push(
            format!("{k}.min-checkpoint-page-count"),
            db.checkpoint.min_pages.to_string(),
        );
        match db.checkpoint.truncate {
            TruncateThreshold::Bytes(b) => push(format!("{k}.truncate-wal-size"), format_size(b)),
            TruncateThreshold::Pages(n) => {
                push(format!("{k}.truncate-page-n"), format!("{n} pages"))
            }
        }
        push(format!("{k}.busy-timeout"), d(db.busy_timeout));
        push(
            format!("{k}.restore-if-db-not-exists"),
            db.restore_if_db_not_exists.to_string(),
        );
        push(format!("{k}.snapshot.interval"), d(db.snapshot.interval));
        push(format!("{k}.snapshot.retention"), d(db.snapshot.retention));
        for r in &db.replicas {
            let rk = &r.key;
            push(format!("{rk}.url"), r.url.clone());
            push(format!("{rk}.type"), r.kind.name().into());
            if let Some(n) = &r.name {
                push(format!("{rk}.name"), n.clone());
            }
            push(format!("{rk}.sync-interval"), d(r.sync_interval));
            push(
                format!("{rk}.litestream-compat"),
                r.litestream_compat.to_string(),
            );
            if r.kind == ReplicaKind::S3 {
                let from_env =
                    |f: &str| matches!(cfg.origin(&format!("{rk}.{f}")), Origin::ProcessEnv { .. });
                let id = match &r.access_key_id {
                    Some(id) => id.clone(),
                    None if from_env("access-key-id") => "(from the environment)".into(),
                    None => "(none: anonymous unless the environment provides one)".into(),
                };
                push(format!("{rk}.access-key-id"), id);
                let secret = match &r.secret_access_key {
                    Some(s) => s.to_string(),
                    None if from_env("secret-access-key") => {
                        "<redacted> (from the environment)".into()
                    }
                    None => "(none)".into(),
                };
                push(format!("{rk}.secret-access-key"), secret);
            }
            if r.kind == ReplicaKind::Abs {
                push(
                    format!("{rk}.account-key"),
                    r.account_key
                        .as_ref()
                        .map_or("(none: from the environment)".into(), |s| s.to_string()),
                );
            }
        }
    }
    out
}
