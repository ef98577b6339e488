//! Resolution tests of replica settings: URLs read alike from the config
//! file and the command line, provider hostnames, emulator endpoints, and
//! S3 storage class and server-side encryption.

use std::path::Path;

use super::tests::{one_problem, parse, problems};
use super::*;
use crate::replica::ReplicaLocation;

/// The config file and the command line read a replica URL with one
/// grammar: a provider hostname gives the bucket and region in both, and a
/// query parameter wins over the hostname in both.
#[test]
fn the_config_file_and_the_command_line_read_a_url_alike() {
    for url in [
        "s3://bkt.s3.eu-central-1.amazonaws.com/db",
        "s3://bkt.s3.eu-central-1.amazonaws.com/db?region=us-east-2",
        "s3://bkt.localhost:9000/db",
        "s3://bkt/db?endpoint=http://127.0.0.1:9000",
    ] {
        let c = parse(&format!(
            "dbs:\n  - path: /data/app.db\n    replica:\n      url: {url}\n"
        ));
        let from_file = &c.dbs[0].replicas[0].location;
        let from_flag = ReplicaLocation::parse(url).unwrap();
        assert_eq!(from_file, &from_flag, "{url}");
    }
    let l = ReplicaLocation::parse("s3://bkt.s3.eu-central-1.amazonaws.com/db").unwrap();
    assert_eq!(
        (l.bucket.as_str(), l.region.as_deref()),
        ("bkt", Some("eu-central-1"))
    );
    let l = ReplicaLocation::parse("s3://bkt.s3.eu-central-1.amazonaws.com/db?region=us-east-2")
        .unwrap();
    assert_eq!(l.region.as_deref(), Some("us-east-2"));
}

#[test]
fn s3_provider_hostnames_like_litestream() {
    use crate::replica::parse_s3_host as h;
    let b = |host: &str| h(host).unwrap();
    assert_eq!(b("mybkt.litestream.io").bucket, "mybkt.litestream.io");
    let x = b("bkt.s3.amazonaws.com");
    assert_eq!(
        (x.bucket.as_str(), x.region, x.endpoint),
        ("bkt", None, None)
    );
    let x = b("my.bkt.s3.us-west-2.amazonaws.com");
    assert_eq!(
        (x.bucket.as_str(), x.region.as_deref()),
        ("my.bkt", Some("us-west-2"))
    );
    let x = b("bkt.localhost:9000");
    assert_eq!(
        (x.bucket.as_str(), x.endpoint.as_deref(), x.force_path_style),
        ("bkt", Some("http://localhost:9000"), true)
    );
    assert!(h("localhost:9000").unwrap_err().contains("no bucket"));
    let x = b("bkt.nyc3.digitaloceanspaces.com");
    assert_eq!(
        (
            x.bucket.as_str(),
            x.region.as_deref(),
            x.endpoint.as_deref()
        ),
        (
            "bkt",
            Some("nyc3"),
            Some("https://nyc3.digitaloceanspaces.com")
        )
    );
    let x = b("bkt.s3.us-west-002.backblazeb2.com");
    assert_eq!(
        (x.bucket.as_str(), x.endpoint.as_deref(), x.force_path_style),
        ("bkt", Some("https://s3.us-west-002.backblazeb2.com"), true)
    );
    assert_eq!(
        b("bkt.s3.filebase.com").endpoint.as_deref(),
        Some("https://s3.filebase.com")
    );
    assert_eq!(
        b("bkt.s3.fr-par.scw.cloud").region.as_deref(),
        Some("fr-par")
    );

    // Through the whole resolution: the canonical URL carries what the host said.
    let c = parse(
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://bkt.s3.eu-central-1.amazonaws.com/db\n  - path: /b.db\n    replica:\n      url: s3://bkt.127.0.0.1:9000/db?region=x\n",
    );
    assert_eq!(c.dbs[0].replicas[0].url, "s3://bkt/db?region=eu-central-1");
    assert_eq!(
        c.dbs[1].replicas[0].url,
        "s3://bkt/db?endpoint=http://127.0.0.1:9000&region=x"
    );
}

#[test]
fn gs_and_abs_replicas_take_an_endpoint() {
    let text = r#"
dbs:
  - path: /data/gcs.db
    replica:
      type: gs
      bucket: bkt
      path: app
      endpoint: http://127.0.0.1:4443
  - path: /data/azure.db
    replica:
      type: abs
      bucket: container
      path: app
      account-name: devstoreaccount1
      endpoint: http://127.0.0.1:10000/devstoreaccount1
"#;
    let c = parse(text);
    let g = &c.dbs[0].replicas[0];
    assert_eq!(g.url, "gs://bkt/app?endpoint=http://127.0.0.1:4443");
    assert_eq!(
        g.location.endpoint.as_deref(),
        Some("http://127.0.0.1:4443")
    );
    let a = &c.dbs[1].replicas[0];
    assert_eq!(
        a.url,
        "abs://devstoreaccount1@container/app?endpoint=http://127.0.0.1:10000/devstoreaccount1"
    );
}

#[test]
fn hundreds_of_levels_are_an_error_not_an_overflow() {
    let mut text = String::from("levels:\n");
    for _ in 0..300 {
        text.push_str("  - interval: 1s\n");
    }
    text.push_str("dbs:\n  - path: /data/app.db\n    replica:\n      url: file:///backup\n");
    let p = problems(&text);
    assert!(
        p.iter().any(|p| p.message.contains("at most 8 levels")),
        "{p:#?}"
    );
}

#[test]
fn logging_keys_resolve_and_logs_default_to_stderr() {
    let none = parse("dbs: []\n").logging;
    assert_eq!(
        none,
        LoggingConfig {
            level: LogLevel::Info,
            format: LogFormat::Text,
            stderr: true,
        }
    );
    let set = parse("logging:\n  level: WARNING\n  type: json\n  stderr: false\n").logging;
    assert_eq!(
        set,
        LoggingConfig {
            level: LogLevel::Warn,
            format: LogFormat::Json,
            stderr: false,
        }
    );
}

const SSE_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes

/// Litestream's S3 storage and encryption keys are taken: storage class and
/// SSE-KMS go into the canonical URL, the SSE-C key never does (it is kept
/// beside it, as a secret), and top-level values apply to every S3 replica.
#[test]
fn storage_class_and_server_side_encryption() {
    let c = parse(&format!(
        "storage-class: STANDARD_IA\ndbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n      sse-kms-key-id: alias/backups\n  - path: /b.db\n    replica:\n      url: s3://b/b\n      storage-class: ONEZONE_IA\n      sse-customer-algorithm: AES256\n      sse-customer-key: {SSE_KEY}\n  - path: /c.db\n    replica:\n      url: s3://b/c\n      sse-customer-key-path: ~/sse.key\n  - path: /d.db\n    replica:\n      url: s3://b/d?sse-customer-key={SSE_KEY}\n"
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let r: Vec<&ReplicaConfig> = c.dbs.iter().map(|d| &d.replicas[0]).collect();
    assert_eq!(
        r[0].url,
        "s3://b/a?storage-class=STANDARD_IA&sse-kms-key-id=alias/backups"
    );
    assert_eq!(
        r[0].location.sse,
        Some(crate::replica::ServerSideEncryption::Kms {
            key_id: "alias/backups".into()
        })
    );
    assert_eq!(r[1].url, "s3://b/b?storage-class=ONEZONE_IA");
    assert_eq!(
        r[1].sse_customer_key.as_ref().map(|k| k.expose()),
        Some(SSE_KEY)
    );
    assert_eq!(r[1].location.sse, None, "the key is not in the URL");
    assert_eq!(
        r[2].sse_customer_key_path.as_deref(),
        Some(Path::new("/home/me/sse.key"))
    );
    // A key written in the URL moves out of it.
    assert_eq!(r[3].url, "s3://b/d?storage-class=STANDARD_IA");
    assert_eq!(
        r[3].sse_customer_key.as_ref().map(|k| k.expose()),
        Some(SSE_KEY)
    );
    for r in &r {
        assert!(!r.url.contains(SSE_KEY));
        assert!(!format!("{r:?}").contains(SSE_KEY), "{r:?}");
    }
}

/// The key file is read when the replica opens; a bad one is an error that
/// names the file.
#[test]
fn the_sse_customer_key_file_is_read_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sse.key");
    let c = parse(&format!(
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a?endpoint=http://127.0.0.1:9\n      sse-customer-key-path: {}\n",
        key.display()
    ));
    let r = &c.dbs[0].replicas[0];
    let e = r.sse_customer_key().unwrap_err().to_string();
    assert!(e.contains("cannot read sse-customer-key-path"), "{e}");
    std::fs::write(&key, "c2hvcnQ=\n").unwrap();
    let e = r.sse_customer_key().unwrap_err().to_string();
    assert!(e.contains("32-byte") && e.contains("sse.key"), "{e}");
    std::fs::write(&key, format!("{SSE_KEY}\n")).unwrap();
    assert_eq!(r.sse_customer_key().unwrap().unwrap().expose(), SSE_KEY);
    assert!(r.open().is_ok());
}

#[test]
fn bad_storage_and_encryption_settings_are_named() {
    for (text, key, says) in [
        (
            "dbs:\n  - path: /a.db\n    replica: {url: s3://b/a, storage-class: GLACIER}\n",
            "storage-class",
            "GLACIER_IR",
        ),
        (
            "dbs:\n  - path: /a.db\n    replica: {url: s3://b/a, storage-class: standard ia}\n",
            "storage-class",
            "STANDARD_IA",
        ),
        (
            "dbs:\n  - path: /a.db\n    replica: {url: s3://b/a, sse-customer-key: c2hvcnQ=}\n",
            "sse-customer-key",
            "32-byte",
        ),
        (
            "dbs:\n  - path: /a.db\n    replica: {url: s3://b/a, sse-customer-key: '***'}\n",
            "sse-customer-key",
            "openssl rand -base64 32",
        ),
        (
            "dbs:\n  - path: /a.db\n    replica: {url: s3://b/a, sse-customer-algorithm: aws:kms}\n",
            "sse-customer-algorithm",
            "AES256",
        ),
        (
            "dbs:\n  - path: /a.db\n    replica: {url: s3://b/a, sse-customer-key: x, sse-customer-key-path: /k}\n",
            "sse-customer-key",
            "not both",
        ),
    ] {
        let p = one_problem(text);
        assert!(p.key.ends_with(key), "{text}: {p:?}");
        assert!(p.message.contains(says), "{text}: {p:?}");
    }
    let p = one_problem(&format!(
        "dbs:\n  - path: /a.db\n    replica: {{url: s3://b/a, sse-kms-key-id: k, sse-customer-key: {SSE_KEY}}}\n"
    ));
    assert!(p.message.contains("keep one"), "{p:?}");
    assert!(!p.message.contains(SSE_KEY), "{p:?}");
    // In the URL: the message never shows the key.
    let p = one_problem(&format!(
        "dbs:\n  - path: /a.db\n    replica: {{url: 's3://b/a?sse-kms-key-id=k&sse-customer-key={SSE_KEY}'}}\n"
    ));
    assert!(p.message.contains("keep one"), "{p:?}");
    assert!(!p.message.contains(SSE_KEY), "{p:?}");
    // On a non-S3 replica: a warning, and nothing else happens.
    let c = parse("dbs:\n  - path: /a.db\n    replica: {url: gs://b/a, storage-class: NEARLINE}\n");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].message.contains("s3 replicas only"));
}
