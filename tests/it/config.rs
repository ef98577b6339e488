//! `litevault config check | explain` on real files: Litestream's example
//! configurations, errors with file:line:column, secrets redacted, and the
//! same reading of a file as the real `litestream` binary.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = litevault(&[]);
    c.args(args)
        .stdin(Stdio::null())
        .env_remove("LITEVAULT_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn check_accepts_litestreams_directory_example_with_dir() {
    // etc/litestream-directory-example.yml (benbjohnson/litestream), with
    // the databases moved under a temporary directory and `dir:` for the
    // `directory:` that Litestream itself rejects.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for p in [
        "myapp/a.db",
        "myapp/b.db",
        "tenants/t1/x.sqlite",
        "users/user_1.db",
        "users/admin.db",
    ] {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        create_db(&path, 4096)
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
    }
    let body = format!(
        r#"---
addr: ":9090"
dbs:
  - dir: {r}/myapp
    pattern: "*.db"
    recursive: false
    replica:
      type: s3
      bucket: my-bucket
      path: myapp/databases
      region: us-east-1
  - dir: {r}/tenants
    pattern: "*.sqlite"
    recursive: true
    replica:
      type: s3
      bucket: tenant-backups
      path: tenants
      region: us-west-2
      sync-interval: 1m
  - path: {r}/critical/main.db
    checkpoint-interval: 1m
    replica:
      type: s3
      bucket: critical-backups
      path: main
      region: us-east-1
      sync-interval: 10s
  - dir: {r}/users
    pattern: "user_*.db"
    recursive: false
    checkpoint-interval: 5m
    replica:
      type: s3
      bucket: user-backups
      path: users
      region: eu-west-1
access-key-id: ${{AWS_ACCESS_KEY_ID}}
secret-access-key: ${{AWS_SECRET_ACCESS_KEY}}
logging:
  level: info
  type: text
"#,
        r = root.display()
    );
    let cfg = write(root, "litestream.yml", &body);
    let o = run(
        &["config", "check", "--config", &cfg],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "hunter2"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    // myapp: 2, tenants: 1 (recursive), critical: 1, users: 1 (pattern).
    assert!(
        text(&o.stdout).contains("ok: 5 database(s), 5 replica(s), 0 warning(s)"),
        "{}",
        text(&o.stdout)
    );

    // Unset variables are warnings naming the line, not errors.
    let o = run(&["config", "check", "--config", &cfg], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    let line = 1 + body
        .lines()
        .position(|l| l.starts_with("access-key-id"))
        .unwrap();
    assert!(
        err.contains(&format!(
            "warning: {cfg}:{line}: ${{AWS_ACCESS_KEY_ID}} is not set"
        )),
        "{err}"
    );
}

#[test]
fn check_reports_unknown_keys_and_bad_values_with_file_line_column() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "bad.yml",
        "dbs:\n  - path: /data/app.db\n    replica:\n      url: s3://bucket/app\n      sync-intervl: 5s\n",
    );
    let o = run(&["config", "check", "--config", &cfg], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("error: {cfg}:5:7: dbs[0].replica.sync-intervl: unknown key `sync-intervl`; did you mean `sync-interval`?")),
        "{err}"
    );

    let cfg = write(
        tmp.path(),
        "bad2.yml",
        "snapshot:\n  interval: 24h\n  retention: 1\ndbs:\n  - path: /data/app.db\n    replica:\n      url: s3://bucket/app\n",
    );
    let o = run(&["config", "check", "--config", &cfg], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("{cfg}:3:")) && err.contains("retention: 1 has no unit"),
        "{err}"
    );

    // Several semantic errors are reported at once, each with its line.
    let cfg = write(
        tmp.path(),
        "bad3.yml",
        "dbs:\n  - path: /a.db\n    replica: {url: s3://b/app}\n  - path: /b.db\n    replica: {url: s3://b/app}\n  - path: /c.db\n    replica: {url: sftp://u@h/x}\n",
    );
    let o = run(&["config", "check", "--config", &cfg], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "{cfg}:5: dbs[1].replica.url: replicates to s3://b/app, as dbs[0].replica does (line 3)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{cfg}:7:")) && err.contains("replica type `sftp` is not supported"),
        "{err}"
    );
    assert!(err.contains("2 error(s)"), "{err}");
}

#[test]
fn explain_shows_defaults_origins_and_redacts_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "litevault.yml",
        "sync-interval: 5s\ndbs:\n  - path: /data/app.db\n    replicas:\n      - url: s3://bucket/app?endpoint=127.0.0.1:9000\n        access-key-id: AKIAEXAMPLE\n        secret-access-key: ${SECRET}\n      - path: /var/backups/app\n        sync-interval: 250ms\n",
    );
    let o = run(
        &["config", "explain", "--config", &cfg, "--json"],
        &[("SECRET", "very-secret-value")],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(!out.contains("very-secret-value"), "secret leaked: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let get = |k: &str| {
        v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == k)
            .unwrap_or_else(|| panic!("{k} missing in {out}"))
            .clone()
    };
    let s = get("dbs[0].replicas[0].secret-access-key");
    assert_eq!(s["value"], "<redacted>");
    assert_eq!(s["origin"]["from"], "env");
    assert_eq!(s["origin"]["vars"][0], "SECRET");
    assert_eq!(
        get("dbs[0].replicas[0].url")["value"],
        "s3://bucket/app?endpoint=http://127.0.0.1:9000"
    );
    assert_eq!(get("dbs[0].replicas[0].sync-interval")["value"], "5s");
    assert_eq!(
        get("dbs[0].replicas[0].sync-interval")["origin"]["from"],
        "global"
    );
    assert_eq!(get("dbs[0].replicas[1].sync-interval")["value"], "250ms");
    assert_eq!(
        get("dbs[0].replicas[1].url")["value"],
        "file:///var/backups/app"
    );
    assert_eq!(get("dbs[0].poll-interval")["value"], "1s");
    assert_eq!(get("dbs[0].poll-interval")["origin"]["from"], "default");
    assert_eq!(get("levels[1].interval")["value"], "L2 5m");
    assert_eq!(get("dbs[0].snapshot.retention")["value"], "24h");

    // Text output: one line per setting, with its origin.
    let o = run(
        &["config", "explain", "--config", &cfg],
        &[("SECRET", "very-secret-value")],
    );
    assert!(o.status.success());
    let out = text(&o.stdout);
    assert!(!out.contains("very-secret-value"));
    let line = out
        .lines()
        .find(|l| l.starts_with("dbs[0].replicas[1].sync-interval"))
        .unwrap();
    assert!(line.contains("250ms") && line.ends_with("file:9"), "{line}");

    // With --no-expand-env the reference stays as written.
    let o = run(
        &[
            "config",
            "explain",
            "--config",
            &cfg,
            "--json",
            "--no-expand-env",
        ],
        &[("SECRET", "very-secret-value")],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stdout).contains("very-secret-value"));
}

#[test]
fn config_file_location_order() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "elsewhere.yml",
        "dbs:\n  - path: /e.db\n    replica: {url: s3://b/e}\n",
    );
    // LITEVAULT_CONFIG names the file when --config does not.
    let o = litevault(&[])
        .args(["config", "check"])
        .current_dir(tmp.path())
        .env("LITEVAULT_CONFIG", &cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("elsewhere.yml: ok: 1 database(s)"));
    // Then ./litevault.yml.
    write(
        tmp.path(),
        "litevault.yml",
        "dbs:\n  - path: /l.db\n    replica: {url: s3://b/l}\n  - path: /m.db\n    replica: {url: s3://b/m}\n",
    );
    let o = litevault(&[])
        .args(["config", "check"])
        .current_dir(tmp.path())
        .env_remove("LITEVAULT_CONFIG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("litevault.yml: ok: 2 database(s)"),
        "{}",
        text(&o.stdout)
    );
    // --config wins over both.
    let o = litevault(&[])
        .args(["config", "check", "--config", &cfg])
        .current_dir(tmp.path())
        .env("LITEVAULT_CONFIG", "/nonexistent.yml")
        .output()
        .unwrap();
    assert!(
        text(&o.stdout).contains("elsewhere.yml: ok"),
        "{}",
        text(&o.stderr)
    );
    // A missing file is named.
    let o = run(
        &["config", "check", "--config", "/nonexistent/litevault.yml"],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("cannot read the config file /nonexistent/litevault.yml"),
        "{}",
        text(&o.stderr)
    );
}

/// The database paths `litestream databases -json` reads from a file.
fn litestream_paths(cfg: &str, env: &[(&str, &str)]) -> Result<Vec<String>, String> {
    let mut c = Command::new(litestream_bin());
    c.args(["databases", "-config", cfg, "-json"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    if !o.status.success() {
        return Err(text(&o.stderr) + &text(&o.stdout));
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    Ok(v.as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_string())
        .collect())
}

fn litevault_paths(cfg: &str, env: &[(&str, &str)], cwd: &Path) -> Vec<String> {
    let mut c = litevault(&[]);
    c.args(["config", "explain", "--json", "--config", cfg])
        .current_dir(cwd);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["key"].as_str().unwrap().ends_with("].path")
                && e["key"].as_str().unwrap().starts_with("dbs[")
        })
        .map(|e| e["value"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "needs litestream 0.5.17: run scripts/test.sh"]
fn reads_a_file_the_way_litestream_does() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Variable expansion ($VAR, ${VAR}, unset, $$), `sqlite://`, and
    // relative paths resolved against the working directory. (`~` differs:
    // Litestream takes the home directory from the user database, litevault
    // from $HOME.)
    let body = "dbs:\n  - path: ${BASE}/$NAME-${UNSET}-$$.db\n    replica:\n      path: ${BASE}/rep1\n  - path: sqlite://rel/app.db\n    replica:\n      url: file:///tmp/litevault-config-test-rep2\n  - path: ./a/../b.db\n    replicas:\n      - url: file:///tmp/litevault-config-test-rep3\n";
    let cfg = write(root, "same.yml", body);
    let base = root.display().to_string();
    let env = [("BASE", base.as_str()), ("NAME", "app")];
    // litestream resolves relative paths against its working directory.
    let mut c = Command::new(litestream_bin());
    c.args(["databases", "-config", &cfg, "-json"])
        .current_dir(root);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "litestream rejected the file: {}",
        text(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ls: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_string())
        .collect();
    let lv = litevault_paths(&cfg, &env, root);
    assert_eq!(lv, ls);
    assert_eq!(lv[0], format!("{base}/app--.db"));
    assert_eq!(lv[1], format!("{base}/rel/app.db"));
    assert_eq!(lv[2], format!("{base}/b.db"));
}

#[test]
#[ignore = "needs litestream 0.5.17: run scripts/test.sh"]
fn litestreams_directory_example_is_rejected_by_both_tools() {
    // etc/litestream-directory-example.yml uses `directory:`, a key litestream
    // 0.5.17 does not know; it then finds neither `path` nor `dir`.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "dir-example.yml",
        "addr: \":9090\"\ndbs:\n  - directory: /var/lib/myapp/databases\n    pattern: \"*.db\"\n    recursive: false\n    replica:\n      type: s3\n      bucket: my-bucket\n      path: myapp/databases\n      region: us-east-1\n",
    );
    let err = litestream_paths(&cfg, &[]).unwrap_err();
    assert!(err.contains("must specify either 'path' or 'dir'"), "{err}");
    let o = run(&["config", "check", "--config", &cfg], &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!(
            "{cfg}:3:5: dbs[0].directory: unknown key `directory`: write `dir`"
        )),
        "{e}"
    );
}

#[test]
#[ignore = "needs litestream 0.5.17: run scripts/test.sh"]
fn litestream_ignores_a_typo_litevault_does_not() {
    // The reason litevault refuses unknown keys: litestream 0.5.17 accepts a
    // misspelt key silently (and so replicates with the default).
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("a.db");
    create_db(&db, 4096)
        .execute_batch("CREATE TABLE t(x)")
        .unwrap();
    let cfg = write(
        tmp.path(),
        "typo.yml",
        &format!(
            "dbs:\n  - path: {}\n    replica:\n      url: file://{}/rep\n      sync-intervl: 1h\n",
            db.display(),
            tmp.path().display()
        ),
    );
    assert_eq!(
        litestream_paths(&cfg, &[]).unwrap(),
        vec![db.display().to_string()]
    );
    let o = run(&["config", "check", "--config", &cfg], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("did you mean `sync-interval`?"));
}

/// Runs `litestream replicate` until it has logged `n` "replicating to"
/// lines, then stops it; returns `(replica path, sync interval)` per line.
fn litestream_replicating_to(cfg: &str, n: usize) -> Vec<(String, String)> {
    use std::io::BufRead;
    let mut child = Command::new(litestream_bin())
        .args(["replicate", "-config", cfg])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    let mut log = Vec::new();
    while out.len() < n {
        // A safety net against a hang, not a timing assertion.
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) => {
                if line.contains("msg=\"replicating to\"") {
                    let field = |k: &str| {
                        line.split_whitespace()
                            .find_map(|t| t.strip_prefix(k))
                            .unwrap_or_default()
                            .to_string()
                    };
                    out.push((field("path="), field("sync-interval=")));
                }
                log.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                panic!("litestream did not report {n} replicas: {log:#?}");
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    out.sort();
    out
}

#[test]
#[ignore = "needs litestream 0.5.17: run scripts/test.sh"]
fn dir_sources_and_sync_intervals_match_litestream_replicate() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for p in [
        "data/one.db",
        "data/sub/two.db",
        "data/skip.sqlite",
        "single.db",
    ] {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        create_db(&path, 4096)
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
    }
    std::fs::write(root.join("data/notdb.db"), "not a database at all").unwrap();
    let r = root.display();
    let cfg = write(
        root,
        "dirs.yml",
        &format!(
            "sync-interval: 3s\ndbs:\n  - dir: {r}/data\n    pattern: \"*.db\"\n    recursive: true\n    replica:\n      path: {r}/rep\n  - path: {r}/single.db\n    replica:\n      url: file://{r}/rep-single\n      sync-interval: 250ms\n"
        ),
    );
    let ls = litestream_replicating_to(&cfg, 3);
    let c = litevault::config::Config::load(Path::new(&cfg), &Default::default()).unwrap();
    let mut lv: Vec<(String, String)> = c
        .expand_dbs()
        .unwrap()
        .iter()
        .map(|d| {
            let r = &d.replicas[0];
            (
                r.location.path.clone(),
                litevault::units::format_duration(r.sync_interval),
            )
        })
        .collect();
    lv.sort();
    assert_eq!(lv, ls);
    assert_eq!(
        ls.iter()
            .map(|(p, _)| p.strip_prefix(&r.to_string()).unwrap())
            .collect::<Vec<_>>(),
        vec!["/rep-single", "/rep/one.db", "/rep/sub/two.db"]
    );
}
