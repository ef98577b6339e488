//! Resolution tests, including Litestream's own example configurations
//! (transcribed from benbjohnson/litestream: `etc/litestream.yml`,
//! `etc/litestream-directory-example.yml`,
//! `.codex/skills/litestream/configuration/example-litestream.yml`, and the
//! litestream.io configuration reference).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::replica::{ReplicaLocation, Scheme};

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env_of(vars);
    let ctx = ParseContext {
        file: "test.yml".into(),
        cwd: Path::new("/work/dir"),
        env: &env,
        pid: 4242,
        expand_env: true,
    };
    Config::parse(text, &ctx)
}

pub(super) fn parse(text: &str) -> Config {
    match parse_env(text, &[("HOME", "/home/me")]) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

pub(super) fn problems(text: &str) -> Vec<Problem> {
    match parse_env(text, &[]) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(e) => panic!("unexpected error {e}"),
    }
}

pub(super) fn one_problem(text: &str) -> Problem {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:#?}");
    p.into_iter().next().unwrap()
}

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn litestream_etc_litestream_yml_all_commented_is_empty() {
    // etc/litestream.yml ships with every line commented out.
    let text = "# AWS credentials\n# access-key-id:     AKIAxxxxxxxxxxxxxxxx\n# secret-access-key: xxx\n\n# dbs:\n#  - path: /path/to/primary/db\n#    replica:\n#      url:  s3://my.bucket.com/db\n# levels:\n#   - interval: 30s\n# addr: \":9090\"\n";
    let c = parse(text);
    assert!(c.dbs.is_empty());
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("no databases")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn litestream_codex_example_config() {
    let text = r#"# Litestream Configuration Example
# access-key-id: ${AWS_ACCESS_KEY_ID}
levels:
  - interval: 30s     # L1: Compact L0 files every 30 seconds
  - interval: 5m      # L2: Compact L1 files every 5 minutes
  - interval: 1h      # L3: Compact L2 files hourly

snapshot:
  interval: 24h       # Create daily snapshots
  retention: 24h      # Keep snapshots for 24 hours

logging:
  level: info         # debug, info, warn, error
  type: text          # text or json

dbs:
  - path: /data/app.db
    replica:
      url: s3://my-bucket/app-backup
"#;
    let c = parse(text);
    // The commented ${AWS_ACCESS_KEY_ID} is not reported as unset.
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.dbs.len(), 1);
    let db = &c.dbs[0];
    assert_eq!(db.source, DbSource::Path("/data/app.db".into()));
    assert_eq!(
        db.compaction
            .0
            .iter()
            .map(|l| (l.level, l.interval))
            .collect::<Vec<_>>(),
        vec![(1, SECS(30)), (2, SECS(300)), (3, SECS(3600))]
    );
    assert_eq!(db.snapshot.interval, SECS(86400));
    let r = &db.replicas[0];
    assert_eq!(r.kind, ReplicaKind::S3);
    assert_eq!(r.url, "s3://my-bucket/app-backup");
    assert_eq!(r.sync_interval, defaults::SYNC_INTERVAL);
    assert_eq!(c.origin("levels[1].interval"), Origin::File { line: 5 });
    assert_eq!(c.origin("dbs[0].poll-interval"), Origin::Default);
}

#[test]
fn litestream_codex_example_full_s3_and_others() {
    // The commented-out examples 2, 3, 4, 5, 8 and 10 of the same file,
    // uncommented, one database each.
    let text = r#"
dbs:
  - path: /data/production.db
    monitor-interval: 10ms
    checkpoint-interval: 1m
    min-checkpoint-page-count: 1000
    busy-timeout: 5s
    replica:
      url: s3://my-bucket/production
      access-key-id: ${AWS_ACCESS_KEY_ID}
      secret-access-key: ${AWS_SECRET_ACCESS_KEY}
      region: us-west-2
      sync-interval: 1s
  - path: /data/r2.db
    replica:
      url: s3://bucket/path?endpoint=account-id.r2.cloudflarestorage.com
  - path: /data/tigris.db
    replica:
      url: s3://bucket/path2?endpoint=fly.storage.tigris.dev&region=auto
  - path: /data/minio.db
    replica:
      url: s3://bucket/path3?endpoint=localhost:9000&skipVerify=true
  - path: /data/gcs.db
    replica:
      url: gs://my-bucket/backups/app
  - path: /data/azure.db
    replica:
      url: abs://storageaccount@container/path
      account-name: ${AZURE_STORAGE_ACCOUNT}
      account-key: ${AZURE_STORAGE_KEY}
  - path: /data/file.db
    replica:
      path: /mnt/backup/app-replica
  - path: /data/restore.db
    restore-if-db-not-exists: true
    replica:
      url: s3://my-bucket/app-backup
"#;
    let c = parse_env(
        text,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t/value"),
            ("AZURE_STORAGE_ACCOUNT", "acct"),
            ("AZURE_STORAGE_KEY", "azkey=="),
        ],
    )
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let d = &c.dbs;
    assert_eq!(d[0].poll_interval, Duration::from_millis(10));
    assert_eq!(d[0].busy_timeout, SECS(5));
    let r = &d[0].replicas[0];
    assert_eq!(r.url, "s3://my-bucket/production?region=us-west-2");
    assert_eq!(r.access_key_id.as_deref(), Some("AKIAEXAMPLE"));
    assert_eq!(
        r.secret_access_key.as_ref().unwrap().expose(),
        "s3cr3t/value"
    );
    assert_eq!(
        c.origin("dbs[0].replica.secret-access-key"),
        Origin::Env {
            line: 11,
            vars: vec!["AWS_SECRET_ACCESS_KEY".into()]
        }
    );
    assert_eq!(
        d[1].replicas[0].location.endpoint.as_deref(),
        Some("http://account-id.r2.cloudflarestorage.com"),
        "the URL parser of the replica module adds http:// to a bare endpoint"
    );
    assert_eq!(d[2].replicas[0].location.region.as_deref(), Some("auto"));
    assert!(d[3].replicas[0].location.skip_verify);
    assert_eq!(d[4].replicas[0].kind, ReplicaKind::Gs);
    assert_eq!(d[4].replicas[0].url, "gs://my-bucket/backups/app");
    let az = &d[5].replicas[0];
    assert_eq!(az.kind, ReplicaKind::Abs);
    // account-name from the file wins over the URL's user part.
    assert_eq!(az.url, "abs://acct@container/path");
    assert_eq!(az.account_key.as_ref().unwrap().expose(), "azkey==");
    assert_eq!(d[6].replicas[0].url, "file:///mnt/backup/app-replica");
    assert!(d[7].restore_if_db_not_exists);
    // Secrets never reach Debug output.
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cr3t") && !dbg.contains("azkey"), "{dbg}");
}

#[test]
fn litestream_directory_example_uses_a_key_litestream_rejects() {
    // etc/litestream-directory-example.yml writes `directory:`; litestream
    // 0.5.17 ignores the key and fails with "must specify either 'path' or
    // 'dir'". litevault names the key and the fix.
    let text = "---\naddr: \":9090\"\n\ndbs:\n  - directory: /var/lib/myapp/databases\n    pattern: \"*.db\"\n";
    let p = one_problem(text);
    assert_eq!((p.line, p.column), (5, 5));
    assert_eq!(p.key, "dbs[0].directory");
    assert!(p.message.contains("write `dir`"), "{p}");
}

#[test]
fn litestream_directory_example_with_dir() {
    // The same example with `dir:`.
    let text = r#"---
addr: ":9090"

dbs:
  - dir: /var/lib/myapp/databases
    pattern: "*.db"
    recursive: false
    replica:
      type: s3
      bucket: my-bucket
      path: myapp/databases
      region: us-east-1

  - dir: /var/lib/tenants
    pattern: "*.sqlite"
    recursive: true
    replica:
      type: s3
      bucket: tenant-backups
      path: tenants
      region: us-west-2
      sync-interval: 1m

  - dir: /data/production
    pattern: "*.db"
    recursive: true
    replicas:
      - type: s3
        bucket: prod-backups
        path: databases
        region: us-east-1
      - type: file
        path: /backup/databases

  - path: /var/lib/critical/main.db
    checkpoint-interval: 1m
    replica:
      type: s3
      bucket: critical-backups
      path: main
      region: us-east-1
      sync-interval: 10s

  - dir: /var/lib/users
    pattern: "user_*.db"
    recursive: false
    checkpoint-interval: 5m
    replica:
      type: s3
      bucket: user-backups
      path: users
      region: eu-west-1

access-key-id: ${AWS_ACCESS_KEY_ID}
secret-access-key: ${AWS_SECRET_ACCESS_KEY}

logging:
  level: info
  type: text
"#;
    let c = parse_env(text, &[]).unwrap();
    // Both variables are unset: two warnings with their lines; the empty
    // credentials count as absent (the environment is used), as in Litestream.
    let unset: Vec<u32> = c
        .warnings
        .iter()
        .filter(|w| w.message.contains("is not set"))
        .map(|w| w.line)
        .collect();
    let line_of = |k: &str| 1 + text.lines().position(|l| l.starts_with(k)).unwrap() as u32;
    assert_eq!(
        unset,
        vec![line_of("access-key-id"), line_of("secret-access-key")],
        "{:?}",
        c.warnings
    );
    assert_eq!(c.addr.as_deref(), Some(":9090"));
    assert_eq!(c.dbs.len(), 5);
    let DbSource::Dir {
        dir,
        pattern,
        recursive,
        ..
    } = &c.dbs[1].source
    else {
        panic!()
    };
    assert_eq!(
        (dir.as_path(), pattern.to_string().as_str(), *recursive),
        (Path::new("/var/lib/tenants"), "*.sqlite", true)
    );
    assert_eq!(
        c.dbs[1].replicas[0].url,
        "s3://tenant-backups/tenants?region=us-west-2"
    );
    assert_eq!(c.dbs[1].replicas[0].sync_interval, SECS(60));
    assert_eq!(c.dbs[2].replicas.len(), 2);
    assert_eq!(c.dbs[2].replicas[1].url, "file:///backup/databases");
    assert_eq!(c.dbs[3].checkpoint.interval, SECS(60));
    assert_eq!(c.dbs[4].checkpoint.interval, SECS(300));
    assert!(
        c.dbs
            .iter()
            .all(|d| d.replicas.iter().all(|r| r.access_key_id.is_none()))
    );
}

#[test]
fn litestream_io_reference_replicas_list() {
    // litestream.io/reference/config: several replicas (before v0.5).
    let text = "dbs:\n  - path: /var/lib/db1\n    replicas:\n      - url: s3://mybkt.litestream.io/db1\n\n  - path: /var/lib/db2\n    replicas:\n      - path: /backup/db2\n      - url:  s3://mybkt.litestream.io/db2\n";
    let c = parse(text);
    assert_eq!(c.dbs[0].replicas[0].location.bucket, "mybkt.litestream.io");
    assert_eq!(c.dbs[1].replicas.len(), 2);
    assert_eq!(c.dbs[1].replicas[0].url, "file:///backup/db2");
    assert_eq!(c.dbs[1].replicas[0].key, "dbs[1].replicas[0]");
}

#[test]
fn unknown_key_names_file_line_column_and_suggests() {
    let p = one_problem(
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n      sync-intervl: 5s\n",
    );
    assert_eq!((p.file.as_str(), p.line, p.column), ("test.yml", 5, 7));
    assert_eq!(p.key, "dbs[0].replica.sync-intervl");
    assert!(p.message.contains("did you mean `sync-interval`?"), "{p}");
    assert_eq!(
        p.to_string(),
        format!("test.yml:5:7: dbs[0].replica.sync-intervl: {}", p.message)
    );

    let p = one_problem(
        "dbs:\n  - path: /a.db\n    levels:\n      - interval: 1s\n    replica:\n      url: s3://b/a\n",
    );
    assert!(p.message.contains("`levels` is a top-level key"), "{p}");
    let p = one_problem("dbz: []\n");
    assert!(p.message.contains("did you mean `dbs`?"), "{p}");
}

#[test]
fn yaml_paths_from_indentation() {
    let text = "addr: x\ndbs:\n  - path: /a\n    replicas:\n      - url: u\n      - url: v\n        sync-interval: 1s\n  - path: /b\n    replica:\n      url: w\nlevels:\n- interval: 1s\n- interval: 2s\nsnapshot: {interval: 1s}\n";
    let p = |l| resolve::yaml_path_at(text, l);
    assert_eq!(p(1).as_deref(), Some("addr"));
    assert_eq!(p(3).as_deref(), Some("dbs[0].path"));
    assert_eq!(p(5).as_deref(), Some("dbs[0].replicas[0].url"));
    assert_eq!(p(6).as_deref(), Some("dbs[0].replicas[1].url"));
    assert_eq!(p(7).as_deref(), Some("dbs[0].replicas[1].sync-interval"));
    assert_eq!(p(8).as_deref(), Some("dbs[1].path"));
    assert_eq!(p(10).as_deref(), Some("dbs[1].replica.url"));
    assert_eq!(p(13).as_deref(), Some("levels[1].interval"));
    assert_eq!(p(14).as_deref(), Some("snapshot"));
}

#[test]
fn bad_values_name_the_key_and_line() {
    let p = one_problem(
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n      sync-interval: 5x\n",
    );
    assert_eq!(
        (p.line, p.key.as_str()),
        (5, "dbs[0].replica.sync-interval")
    );
    assert!(p.message.contains("unknown unit \"x\""), "{p}");

    // A bare number is nanoseconds to Litestream: refused with the fix.
    let p = one_problem("l0-retention: 10\n");
    assert_eq!((p.line, p.key.as_str()), (1, "l0-retention"));
    assert!(p.message.contains("write e.g. 10s"), "{p}");

    let p = one_problem("snapshot:\n  interval: 0s\n");
    assert_eq!((p.line, p.key.as_str()), (2, "snapshot.interval"));

    let p = one_problem(
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n      force-path-style: maybe\n",
    );
    assert_eq!(
        (p.line, p.key.as_str()),
        (5, "dbs[0].replica.force-path-style")
    );

    let p = one_problem("logging:\n  level: loud\n");
    assert_eq!((p.line, p.key.as_str()), (2, "logging.level"));

    let p = one_problem("logging:\n  type: xml\n");
    assert_eq!((p.line, p.key.as_str()), (2, "logging.type"));
    assert!(p.message.contains("use text, json or pretty"), "{p}");

    let p = one_problem("truncate-wal-size: 12 parsecs\n");
    assert!(p.message.contains("unknown unit"), "{p}");

    let p = one_problem("dbs:\n  - dir: /x\n    pattern: \"[a-\"\n    replica: {url: s3://b/a}\n");
    assert_eq!((p.line, p.key.as_str()), (3, "dbs[0].pattern"));

    let p = one_problem("addr: 1\naddr: 2\n");
    assert_eq!(p.line, 2);
}

#[test]
fn structural_errors() {
    let p = one_problem(
        "dbs:\n  - path: /a.db\n    replica: {url: s3://b/a}\n    replicas:\n      - url: s3://b/c\n",
    );
    assert!(p.message.contains("either `replica`"), "{p}");
    assert_eq!(p.line, 5);
    let p = one_problem("dbs:\n  - path: /a.db\n");
    assert!(p.message.contains("has no replica"), "{p}");
    let p = one_problem("dbs:\n  - path: /a.db\n    dir: /b\n    replica: {url: s3://b/a}\n");
    assert!(p.message.contains("not both"), "{p}");
    let p = one_problem("dbs:\n  - dir: /b\n    replica: {url: s3://b/a}\n");
    assert!(p.message.contains("needs a `pattern`"), "{p}");
    let all = problems(
        "dbs:\n  - path: /a.db\n    replica:\n      url: sftp://user@host:22/path\n      key-path: /etc/litestream/sftp_key\n",
    );
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        all.iter()
            .any(|p| p.message.contains("replica type `sftp` is not supported"))
    );
    assert!(
        all.iter()
            .any(|p| p.key == "dbs[0].replica.key-path" && p.message.contains("SFTP"))
    );
    let p = one_problem("dbs:\n  - path: /a.db\n    replica:\n      type: s3\n      path: x\n");
    assert!(p.message.contains("needs `bucket`"), "{p}");
    let p = one_problem(
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/x\n      bucket: other\n",
    );
    assert!(p.message.contains("either `url` or `bucket`"), "{p}");
    let p = one_problem(
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/x\n      access-key-id: AK\n",
    );
    assert!(p.message.contains("set both"), "{p}");
    let p = one_problem(
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/x\n      age:\n        recipients: [x]\n",
    );
    assert!(p.message.contains("age encryption"), "{p}");
    let p = one_problem(
        "dbs:\n  - path: /a.db\n    monitor-interval: 1s\n    poll-interval: 5ms\n    replica: {url: s3://b/a}\n",
    );
    assert!(p.message.contains("same setting"), "{p}");
    let p = one_problem("levels:\n  - interval: 30s\n  - level: 3\n    interval: 5m\n");
    assert!(p.message.contains("is L2, not L3"), "{p}");
}

#[test]
fn two_databases_on_one_replica_is_an_error_one_database_twice_a_warning() {
    let text = "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/app\n  - path: /b.db\n    replica:\n      url: s3://b/app/?region=x\n";
    let p = one_problem(text);
    assert_eq!((p.line, p.key.as_str()), (7, "dbs[1].replica.url"));
    assert!(p.message.contains("as dbs[0].replica does (line 4)"), "{p}");

    let text = "dbs:\n  - path: /a.db\n    replica: {url: s3://b/one}\n  - path: /work/dir/../../a.db\n    replica: {url: s3://b/two}\n";
    let c = parse(text);
    let w: Vec<_> = c
        .warnings
        .iter()
        .filter(|w| w.message.contains("same database"))
        .collect();
    assert_eq!(w.len(), 1, "{:?}", c.warnings);
    assert_eq!(w[0].line, 4);
}

#[test]
fn env_expansion_warnings_and_opt_out() {
    let text = "dbs:\n  - path: $HOME/app.db\n    replica:\n      url: file:///tmp/rep-${NOPE}-$PID\n      # $ALSO_NOPE in a comment\n      sync-interval: 2s # cost $$\n";
    let c = parse(text);
    assert_eq!(c.dbs[0].source, DbSource::Path("/home/me/app.db".into()));
    assert_eq!(c.dbs[0].replicas[0].url, "file:///tmp/rep--4242");
    let w: Vec<(u32, &str)> = c
        .warnings
        .iter()
        .map(|w| (w.line, w.message.as_str()))
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, 4);
    assert!(w[0].1.contains("${NOPE} is not set"));
    // `$$` outside a comment warns.
    let c = parse("exec: echo $$\n");
    assert!(
        c.warnings.iter().any(|w| w.message.contains("`$$`")),
        "{:?}",
        c.warnings
    );
    assert_eq!(c.exec.as_deref(), Some("echo"));

    let env = env_of(&[]);
    let ctx = ParseContext {
        file: "t".into(),
        cwd: Path::new("/"),
        env: &env,
        pid: 1,
        expand_env: false,
    };
    let c = Config::parse("exec: run --pass $ecret\n", &ctx).unwrap();
    assert_eq!(c.exec.as_deref(), Some("run --pass $ecret"));
}

#[test]
fn paths_like_litestream() {
    let text = "dbs:\n  - path: sqlite://data/app.db\n    replica:\n      path: ../backups/app\n  - path: ~/b.db\n    replica:\n      url: file:///x/./y/../z\n";
    let c = parse(text);
    assert_eq!(
        c.dbs[0].source,
        DbSource::Path("/work/dir/data/app.db".into())
    );
    assert_eq!(c.dbs[0].replicas[0].url, "file:///work/backups/app");
    assert_eq!(c.dbs[1].source, DbSource::Path("/home/me/b.db".into()));
    assert_eq!(c.dbs[1].replicas[0].url, "file:///x/z");
}

#[test]
fn global_settings_are_inherited_and_origins_say_so() {
    let text = "sync-interval: 5s\nbucket: shared\nregion: eu-west-1\nendpoint: 127.0.0.1:9000\naccess-key-id: AK\nsecret-access-key: SK\nlitestream-compat: true\npoll-interval: 50ms\nshutdown-sync-timeout: 1m\ndbs:\n  - path: /a.db\n    replicas:\n      - type: s3\n        path: a\n      - type: s3\n        path: b\n        sync-interval: 1s\n        litestream-compat: false\n";
    let c = parse(text);
    let r = &c.dbs[0].replicas;
    assert_eq!(
        r[0].url,
        "s3://shared/a?endpoint=http://127.0.0.1:9000&region=eu-west-1"
    );
    assert_eq!(r[0].sync_interval, SECS(5));
    assert_eq!(r[1].sync_interval, SECS(1));
    assert!(r[0].litestream_compat && !r[1].litestream_compat);
    assert_eq!(r[0].s3_credentials().unwrap().access_key_id, "AK");
    assert_eq!(c.dbs[0].poll_interval, Duration::from_millis(50));
    assert_eq!(c.shutdown_timeout, SECS(60));
    assert_eq!(
        c.origin("dbs[0].replicas[0].sync-interval"),
        Origin::Global {
            line: 1,
            env: false
        }
    );
    assert_eq!(
        c.origin("dbs[0].replicas[1].sync-interval"),
        Origin::File { line: 17 }
    );
    assert_eq!(
        c.origin("dbs[0].poll-interval"),
        Origin::Global {
            line: 8,
            env: false
        }
    );
    // The canonical URL is what the replica module parses back.
    let l = ReplicaLocation::parse(&r[0].url).unwrap();
    assert_eq!(l, r[0].location);
    assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
}

#[test]
fn canonical_urls_round_trip() {
    for url in [
        "s3://bkt/a/b?endpoint=https%3A%2F%2Fs3.example.com&region=us-east-1&skip-verify=true",
        "s3://bkt/a?endpoint=http://127.0.0.1:9000/x&region=a%26b",
        "s3://bkt?force-path-style=true",
        "gs://bkt/x/z",
        "abs://acct@container/p",
        "file:///var/backups/app",
        // Found by fuzzing (fuzz/fuzz_targets/replica_url.rs): each of these
        // once gave a canonical URL that parsed to another place.
        "s3://bucket/app?endpoint=http://127.0.0.1:9000&force-path-style=true",
        "abs://ac/name@c/app",
        "abs://a%20b@container/p",
        "file:tmp/x%20y",
        "/var/backups//app/./x/../y//",
        "/var/backups/a?b#c d%20",
        "s3://b/p?endpoint=HTTP://Host:9000/x/",
        "s3://bkt.HOST:9000/db",
        "s3://bkt.h%C3%A9:9000/db",
        "s3://bkt/p?storage-class=STANDARD_IA&sse-kms-key-id=arn:aws:kms:us-east-1:1:key/k%2Fx",
        "s3://bkt/p?sseKmsKeyId=alias/backups&storageClass=INTELLIGENT_TIERING",
    ] {
        let l = ReplicaLocation::parse(url).unwrap();
        let c = canonical_url(&l);
        assert_eq!(ReplicaLocation::parse(&c).unwrap(), l, "{url} -> {c}");
    }
    let l = ReplicaLocation {
        scheme: Scheme::S3,
        bucket: "b".into(),
        path: "p/q".into(),
        endpoint: None,
        region: Some("r".into()),
        force_path_style: false,
        skip_verify: false,
        account: None,
        storage_class: None,
        sse: None,
    };
    assert_eq!(canonical_url(&l), "s3://b/p/q?region=r");
}

#[test]
fn checkpoint_thresholds_and_replicate_options() {
    let c = parse(
        "dbs:\n  - path: /a.db\n    replica: {url: s3://b/a}\n  - path: /b.db\n    truncate-page-n: 1000\n    replica: {url: s3://b/b}\n  - path: /c.db\n    max-checkpoint-page-count: 10\n    replica: {url: s3://b/c}\n  - path: /d.db\n    truncate-wal-size: 64MiB\n    min-checkpoint-page-count: 0\n    replica: {url: s3://b/d}\n  - path: /e.db\n    checkpoint-interval: 5m\n    replica: {url: s3://b/e}\n",
    );
    // No overrides: exactly the library defaults.
    let o = c.replicate_options(&c.dbs[0], 4096);
    let d = crate::ReplicateOptions::default();
    assert_eq!(
        (o.poll_interval, o.shutdown_timeout, o.litestream_compat),
        (d.poll_interval, d.shutdown_timeout, d.litestream_compat)
    );
    assert_eq!(o.retention, d.retention);
    assert_eq!(o.sync_interval, d.sync_interval);
    assert_eq!(o.lease, d.lease);
    assert_eq!(
        (
            o.checkpoint.min_pages,
            o.checkpoint.truncate_bytes,
            o.checkpoint.interval
        ),
        (
            d.checkpoint.min_pages,
            d.checkpoint.truncate_bytes,
            d.checkpoint.interval
        )
    );
    assert_eq!(c.dbs[1].checkpoint.truncate, TruncateThreshold::Pages(1000));
    assert_eq!(
        c.dbs[1].checkpoint.options(4096).truncate_bytes,
        1000 * (4096 + 24)
    );
    assert_eq!(c.dbs[2].checkpoint.truncate, TruncateThreshold::Pages(10));
    assert!(c.warnings.iter().any(|w| w.message.contains("v0.3")));
    assert_eq!(
        c.dbs[3].checkpoint.truncate,
        TruncateThreshold::Bytes(64 << 20)
    );
    assert_eq!(c.dbs[3].checkpoint.min_pages, 0);
    // `checkpoint-interval` reaches the replicator (it used to be read and
    // then ignored).
    assert_eq!(
        c.dbs[4].checkpoint.options(4096).interval,
        c.dbs[4].checkpoint.interval
    );
    assert_eq!(c.dbs[4].checkpoint.interval, SECS(300));
}

#[test]
fn ignored_litestream_keys_warn() {
    let text = "socket:\n  enabled: true\nmcp-addr: \":3001\"\nlogging:\n  source: true\ndbs:\n  - path: /a.db\n    meta-path: /var/lib/meta\n    replica:\n      url: s3://b/a?signPayload=true\n      part-size: 5MB\n      retention: 72h\n";
    let c = parse(text);
    let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
    for k in [
        "socket",
        "mcp-addr",
        "logging.source",
        "dbs[0].meta-path",
        "dbs[0].replica.url",
        "dbs[0].replica.part-size",
        "dbs[0].replica.retention",
    ] {
        assert!(keys.contains(&k), "{k} not in {keys:?}");
    }
    assert_eq!(c.dbs[0].replicas[0].url, "s3://b/a");
}

#[test]
fn explain_lists_defaults_and_redacts() {
    let c = parse(
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n      access-key-id: AK\n      secret-access-key: topsecret\n",
    );
    let e = c.explain();
    let get = |k: &str| {
        e.iter()
            .find(|x| x.key == k)
            .unwrap_or_else(|| panic!("{k} missing"))
    };
    assert_eq!(get("dbs[0].snapshot.interval").value, "24h");
    assert_eq!(get("dbs[0].snapshot.interval").origin, Origin::Default);
    assert_eq!(get("dbs[0].replica.secret-access-key").value, "<redacted>");
    assert_eq!(
        get("dbs[0].replica.secret-access-key").origin,
        Origin::File { line: 6 }
    );
    assert_eq!(get("levels[2].interval").value, "L3 1h");
    assert_eq!(get("dbs[0].truncate-wal-size").value, "256MiB");
    assert!(!format!("{e:?}").contains("topsecret"));

    // Credentials from the process environment are named, not shown.
    let c = parse_env(
        "dbs:\n  - path: /a.db\n    replica: {url: s3://b/a}\n",
        &[("LITESTREAM_SECRET_ACCESS_KEY", "zzz")],
    )
    .unwrap();
    let e = c.explain();
    let s = e
        .iter()
        .find(|x| x.key == "dbs[0].replica.secret-access-key")
        .unwrap();
    assert_eq!(
        s.origin,
        Origin::ProcessEnv {
            var: "LITESTREAM_SECRET_ACCESS_KEY".into()
        }
    );
    assert!(!s.value.contains("zzz"));
}

#[test]
fn dir_sources_expand_like_litestream() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    for p in ["one.db", "sub/two.db"] {
        let conn = rusqlite::Connection::open(root.join(p)).unwrap();
        conn.execute_batch("CREATE TABLE t(x)").unwrap();
    }
    std::fs::write(root.join("notdb.db"), "hello, not sqlite").unwrap();
    std::fs::write(root.join("other.txt"), "x").unwrap();
    let text = format!(
        "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    replica:\n      url: s3://b/all\n",
        root.display()
    );
    let c = parse(&text);
    let found = c.dbs[0].source.expand().unwrap();
    assert_eq!(found, vec![root.join("one.db"), root.join("sub/two.db")]);
    let inst = c.expand_dbs().unwrap();
    let urls: Vec<&str> = inst.iter().map(|d| d.replicas[0].url.as_str()).collect();
    assert_eq!(urls, vec!["s3://b/all/one.db", "s3://b/all/sub/two.db"]);
    // Not recursive: the subdirectory is skipped.
    let c = parse(&text.replace("recursive: true", "recursive: false"));
    assert_eq!(c.dbs[0].source.expand().unwrap(), vec![root.join("one.db")]);
    // A directory instance colliding with a path entry is caught.
    let text2 =
        format!("{text}  - path: /elsewhere.db\n    replica:\n      url: s3://b/all/one.db\n");
    let c = parse(&text2);
    assert!(matches!(
        c.expand_dbs(),
        Err(ConfigError::SharedReplica { .. })
    ));
    // An unwatched directory without databases is refused, as by Litestream.
    let empty = tempfile::tempdir().unwrap();
    let c = parse(&format!(
        "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replica: {{url: s3://b/x}}\n",
        empty.path().display()
    ));
    assert!(matches!(
        c.expand_dbs(),
        Err(ConfigError::NoDatabases { .. })
    ));
    let c = parse(&format!(
        "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    watch: true\n    replica: {{url: s3://b/x}}\n",
        empty.path().display()
    ));
    assert!(c.expand_dbs().unwrap().is_empty());
    let missing = parse(
        "dbs:\n  - dir: /nonexistent/dir\n    pattern: \"*.db\"\n    replica: {url: s3://b/x}\n",
    );
    assert!(matches!(
        missing.dbs[0].source.expand(),
        Err(ConfigError::Scan { .. })
    ));
    let _ = PathBuf::new();
}

#[test]
fn replica_config_opens_a_file_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let c = parse(&format!(
        "dbs:\n  - path: /a.db\n    replica:\n      path: {}/rep\n",
        tmp.path().display()
    ));
    let replica = c.dbs[0].replicas[0].open().unwrap();
    assert_eq!(
        replica.to_string(),
        format!("file://{}/rep", tmp.path().display())
    );
    assert!(tmp.path().join("rep").is_dir());
}

#[test]
fn lease_wait_reaches_the_replicate_options() {
    let c = parse(
        "lease:\n  ttl: 10s\n  wait: 2m\ndbs:\n  - path: /a.db\n    replica: {url: s3://b/a}\n",
    );
    let o = c.replicate_options(&c.dbs[0], 4096);
    let l = o.lease.unwrap();
    assert_eq!((l.ttl, l.wait), (SECS(10), SECS(120)));
    let c = parse("dbs:\n  - path: /a.db\n    replica: {url: s3://b/a}\n");
    let l = c.replicate_options(&c.dbs[0], 4096).lease.unwrap();
    assert_eq!(l.wait, Duration::ZERO, "no wait unless asked");
}
