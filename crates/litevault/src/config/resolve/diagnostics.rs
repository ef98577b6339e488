//! Problems with their place in the file, and the messages that name the fix.

use super::*;

/// The key named at the start of a line (`  - sync-interval: 1x` gives
/// `sync-interval`).
pub(super) fn key_on_line(text: &str, line: u32) -> Option<String> {
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
pub(in crate::config) fn yaml_path_at(text: &str, line: u32) -> Option<String> {
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
pub(in crate::config) fn unknown_key_message(field: &str, expected: &[&str]) -> String {
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

pub(super) fn unsupported_message(key: &str) -> String {
    match key {
        "age" => {
            "age encryption is not supported (Litestream 0.5 refuses it too); remove it".into()
        }
        "sas-token" => {
            "Azure SAS tokens are not supported; use `account-name` and `account-key`".into()
        }
        k => format!(
            "`{k}` configures SFTP, WebDAV or NATS replicas, which litevault does not support; litevault replicates to file, s3 (and S3-compatible services), gs and abs"
        ),
    }
}

impl Resolver<'_, '_> {
    pub(super) fn problem(&self, line: u32, column: u32, key: &str, message: &str) -> Problem {
        Problem {
            file: self.ctx.file.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    pub(super) fn error(&mut self, loc: Option<Location>, key: &str, message: &str) {
        let (l, c) = line_col(loc);
        let p = self.problem(l, c, key, message);
        self.errors.push(p);
    }

    pub(super) fn warn(&mut self, loc: Option<Location>, key: &str, message: &str) {
        let (l, c) = line_col(loc);
        let p = self.problem(l, c, key, message);
        self.warnings.push(p);
    }

    pub(super) fn warn_at(&mut self, line: u32, key: &str, message: &str) {
        let p = self.problem(line, 0, key, message);
        self.warnings.push(p);
    }

    pub(super) fn yaml_problem(&self, e: &serde_saphyr::Error) -> Problem {
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

    pub(super) fn has_env(&self, line: u32) -> Vec<String> {
        self.expansion
            .on_line(line)
            .filter(|s| !s.in_comment)
            .map(|s| s.name.clone())
            .collect()
    }

    pub(super) fn origin_at(&self, loc: Location) -> Origin {
        let line = loc.line() as u32;
        let vars = self.has_env(line);
        if vars.is_empty() {
            Origin::File { line }
        } else {
            Origin::Env { line, vars }
        }
    }

    /// A value of the file, its origin recorded under `key`.
    pub(super) fn take<T: Clone>(&mut self, key: &str, v: &S<T>) -> Option<(T, Location)> {
        let s = v.as_ref()?;
        let o = self.origin_at(s.referenced);
        self.origins.insert(key.to_string(), o);
        Some((s.value.clone(), s.referenced))
    }

    /// A string of the file; an empty string (often an unset `$VAR`) counts
    /// as absent, as in Litestream.
    pub(super) fn take_str(&mut self, key: &str, v: &S<String>) -> Option<(String, Location)> {
        if v.as_ref().is_some_and(|s| s.value.trim().is_empty()) {
            return None;
        }
        self.take(key, v)
    }

    /// A value set locally, else inherited from the top level.
    pub(super) fn inherit<T: Clone>(
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

    pub(super) fn inherit_str(
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

    pub(super) fn positive(
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

    pub(super) fn ignored_and_unsupported(
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

    pub(super) fn abs_path(&self, raw: &str, strip_sqlite: bool) -> PathBuf {
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
}
