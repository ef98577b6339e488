//! From the raw file to the resolved model: validation, inheritance of the
//! top-level settings, defaults, and the origin of every value. Pure.
//!
//! | file | what it resolves |
//! |---|---|
//! | `mod.rs` | the entry point [`parse`] and the [`Resolver`] that carries the problems and origins |
//! | `diagnostics.rs` | problems with their line and column, key suggestions, the YAML path at a line |
//! | `databases.rs` | the top level, logging, each database and its checkpoint settings |
//! | `replicas.rs` | each replica: kind, location, credentials, intervals; checks across databases |
//! | `explain.rs` | every resolved setting with its origin, for `config explain` |

mod databases;
mod diagnostics;
mod explain;
mod replicas;

#[cfg(test)]
pub(super) use diagnostics::yaml_path_at;
pub(super) use explain::explain;

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

/// Carries what resolving finds along the way: the problems, and the
/// origin of every value.
struct Resolver<'a, 'b> {
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
    let mut r = Resolver {
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

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}
