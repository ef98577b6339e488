//! The log as a platform reads it: the config file's `logging` section, the
//! `--log-format`/`--log-level` flags and `LITEVAULT_LOG`, in that order of
//! precedence, JSON lines that Cloud Logging and Fly parse, and the stream
//! `logging.stderr` selects.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::support::*;

/// A database with a few commits, a file replica, and where to write
/// config files.
struct Setup {
    dir: tempfile::TempDir,
    db: PathBuf,
    url: String,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        for i in 1..=3 {
            Workload::apply(&mut c, i).unwrap();
        }
        let url = file_url(&dir.path().join("replica"));
        Setup { dir, db, url }
    }

    fn db(&self) -> &str {
        self.db.to_str().unwrap()
    }

    /// A config file replicating the database, with `logging` (YAML lines
    /// under `logging:`; none when empty).
    /// `replicate --once --config CONFIG` with `env`, which must succeed.
    fn replicate_once(&self, config: &str, env: &[(&str, &str)]) -> Output {
        let o = run(
            self.dir.path(),
            &["replicate", "--once", "--config", config],
            env,
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        o
    }

    fn config(&self, name: &str, logging: &str) -> String {
        let mut body = format!(
            "dbs:\n  - path: {}\n    replica:\n      url: {}\n",
            self.db(),
            self.url
        );
        if !logging.is_empty() {
            body.push_str("logging:\n");
            for l in logging.lines() {
                body.push_str(&format!("  {l}\n"));
            }
        }
        let p = self.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    }
}

/// Runs litevault with neither LITEVAULT_LOG nor LITEVAULT_CONFIG unless
/// `env` sets them.
fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = litevault(&[]);
    c.env_remove("LITEVAULT_LOG")
        .env_remove("LITEVAULT_CONFIG")
        .current_dir(cwd)
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every line of `out` as a JSON log entry: an object whose `severity`,
/// `message` and `time` (RFC 3339, UTC) Cloud Logging reads.
fn json_lines(out: &[u8]) -> Vec<Value> {
    let out = text(out);
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\nin:\n{out}"));
            assert!(v.is_object(), "{l}");
            for k in ["severity", "message", "time"] {
                assert!(v[k].is_string(), "no {k} in {l}");
            }
            let t = v["time"].as_str().unwrap();
            assert!(
                chrono::DateTime::parse_from_rfc3339(t).is_ok()
                    && t.ends_with('Z')
                    && t.contains('.'),
                "time {t} is not RFC 3339 UTC with a fraction"
            );
            v
        })
        .collect()
}

fn severities(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|v| v["severity"].as_str().unwrap())
        .collect()
}

/// The line `replicate` logs for each database it opens.
fn replicating(lines: &[Value]) -> Option<&Value> {
    lines.iter().find(|v| v["message"] == "replicating")
}

#[test]
fn config_json_debug_makes_every_log_line_json_with_debug_lines() {
    let s = Setup::new();
    let cfg = s.config("json.yml", "type: json\nlevel: debug");
    let o = run(s.dir.path(), &["config", "check", "--config", &cfg], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(": ok:"), "{}", text(&o.stdout));

    let o = s.replicate_once(&cfg, &[]);
    // The command's own output stays plain, on stdout; the log is on stderr.
    assert!(
        text(&o.stdout).starts_with(&format!("{} replicated at TXID", s.db())),
        "{}",
        text(&o.stdout)
    );
    let lines = json_lines(&o.stderr);
    let sev = severities(&lines);
    assert!(sev.contains(&"DEBUG"), "no debug line: {sev:?}");
    let settings = lines
        .iter()
        .find(|v| v["message"] == "log settings")
        .unwrap();
    assert_eq!(
        (
            &settings["filter_from"],
            &settings["format"],
            &settings["stream"]
        ),
        (&"logging.level".into(), &"json".into(), &"stderr".into())
    );
    let r = replicating(&lines).expect("the replicating line");
    assert_eq!(r["severity"], "INFO");
    assert_eq!(r["db"], s.db(), "fields are top-level keys: {r}");
    assert!(r["txid"].is_string(), "{r}");
    assert!(
        r["target"].as_str().unwrap().starts_with("litevault"),
        "{r}"
    );
}

#[test]
fn config_level_warn_drops_info_lines() {
    let s = Setup::new();
    // Without a logging section the default is info, in text: the
    // replicating line is there.
    let plain = s.config("plain.yml", "");
    let o = s.replicate_once(&plain, &[]);
    let err = text(&o.stderr);
    assert!(err.contains("INFO") && err.contains("replicating"), "{err}");
    assert!(serde_json::from_str::<Value>(err.lines().next().unwrap()).is_err());

    let warn = s.config("warn.yml", "level: warn");
    let o = s.replicate_once(&warn, &[]);
    let err = text(&o.stderr);
    assert!(!err.contains("INFO") && !err.contains("DEBUG"), "{err}");

    let warn_json = s.config("warn-json.yml", "level: warn\ntype: json");
    let o = s.replicate_once(&warn_json, &[]);
    let lines = json_lines(&o.stderr);
    let sev = severities(&lines);
    assert!(
        sev.iter().all(|s| *s == "WARNING" || *s == "ERROR"),
        "{sev:?}"
    );
}

#[test]
fn log_format_flag_alone_writes_json() {
    let s = Setup::new();
    // Before the subcommand or after it: the flag is global.
    for args in [
        vec![
            "--log-format",
            "json",
            "replicate",
            "--once",
            s.db(),
            &s.url,
        ],
        vec![
            "replicate",
            "--once",
            s.db(),
            &s.url,
            "--log-format",
            "json",
        ],
    ] {
        let o = run(s.dir.path(), &args, &[]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let lines = json_lines(&o.stderr);
        let r = replicating(&lines).expect("the replicating line at the default level");
        assert_eq!(r["severity"], "INFO");
        assert!(!severities(&lines).contains(&"DEBUG"));
    }
    let o = run(s.dir.path(), &["--log-format", "xml", "ltx", &s.url], &[]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("possible values: text, json, pretty"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn flag_over_env_over_config() {
    let s = Setup::new();
    let cfg = s.config("json.yml", "type: json\nlevel: debug");

    // The flags replace both settings of the file.
    let o = run(
        s.dir.path(),
        &[
            "replicate",
            "--once",
            "--config",
            &cfg,
            "--log-format",
            "text",
            "--log-level",
            "warn",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(!err.contains("INFO") && !err.contains("DEBUG"), "{err}");
    assert!(
        err.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_err()),
        "{err}"
    );

    // LITEVAULT_LOG replaces the file's level, not its format.
    let o = s.replicate_once(&cfg, &[("LITEVAULT_LOG", "warn")]);
    let sev = severities(&json_lines(&o.stderr)).join(",");
    assert!(!sev.contains("INFO") && !sev.contains("DEBUG"), "{sev}");

    // --log-level replaces LITEVAULT_LOG.
    let o = run(
        s.dir.path(),
        &[
            "replicate",
            "--once",
            "--config",
            &cfg,
            "--log-level",
            "debug",
        ],
        &[("LITEVAULT_LOG", "warn")],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines = json_lines(&o.stderr);
    let settings = lines
        .iter()
        .find(|v| v["message"] == "log settings")
        .unwrap();
    assert_eq!(settings["filter_from"], "--log-level");

    // A LITEVAULT_LOG that is not a filter is named, and the file's level used.
    let o = s.replicate_once(&cfg, &[("LITEVAULT_LOG", "litevault=loud")]);
    let lines = json_lines(&o.stderr);
    let w = lines
        .iter()
        .find(|v| v["severity"] == "WARNING")
        .expect("a warning about LITEVAULT_LOG");
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .contains("LITEVAULT_LOG=\"litevault=loud\""),
        "{w}"
    );
    assert!(severities(&lines).contains(&"DEBUG"));
}

#[test]
fn logging_stderr_selects_the_stream() {
    let s = Setup::new();
    let to_stdout = s.config("stdout.yml", "type: json\nstderr: false");
    let o = s.replicate_once(&to_stdout, &[]);
    assert_eq!(text(&o.stderr), "", "nothing logged on stderr");
    let out = text(&o.stdout);
    let (result, log): (Vec<&str>, Vec<&str>) = out
        .lines()
        .partition(|l| l.contains("replicated at TXID") && !l.starts_with('{'));
    assert_eq!(result.len(), 1, "{out}");
    let lines = json_lines(log.join("\n").as_bytes());
    assert!(replicating(&lines).is_some(), "{out}");

    let to_stderr = s.config("stderr.yml", "type: json\nstderr: true");
    let o = s.replicate_once(&to_stderr, &[]);
    assert!(replicating(&json_lines(&o.stderr)).is_some());
    assert_eq!(text(&o.stdout).lines().count(), 1, "{}", text(&o.stdout));
}

#[test]
fn other_subcommands_read_the_logging_section_too() {
    let s = Setup::new();
    let cfg = s.config("json.yml", "type: json\nlevel: debug");
    let o = run(s.dir.path(), &["replicate", "--once", s.db(), &s.url], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // verify without a URL takes the replicas from the file, and its log
    // settings with them; its report stays on stdout.
    let o = run(
        s.dir.path(),
        &[
            "verify",
            s.db(),
            "--config",
            &cfg,
            "--json",
            "--timeout",
            "5s",
        ],
        &[],
    );
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    serde_json::from_slice::<Value>(&o.stdout).unwrap();
    let lines = json_lines(&o.stderr);
    let settings = lines
        .iter()
        .find(|v| v["message"] == "log settings")
        .unwrap();
    assert_eq!(settings["filter_from"], "logging.level");
    // With a URL the file is not read: the default log.
    let o = run(
        s.dir.path(),
        &[
            "verify",
            s.db(),
            &s.url,
            "--config",
            &cfg,
            "--json",
            "--timeout",
            "5s",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        !text(&o.stderr).contains("\"severity\""),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_bad_logging_type_is_a_config_error_naming_the_key() {
    let s = Setup::new();
    let cfg = s.config("bad.yml", "type: xml");
    let o = run(s.dir.path(), &["config", "check", "--config", &cfg], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(
        err.contains("logging.type") && err.contains("use text, json or pretty"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{cfg}:6")),
        "names the file and line: {err}"
    );
    // replicate refuses the file rather than logging in some other way.
    let o = run(
        s.dir.path(),
        &["replicate", "--once", "--config", &cfg],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("logging.type"),
        "{}",
        text(&o.stderr)
    );
}
