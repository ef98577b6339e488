//! Arbitrary text as a YAML configuration file: resolving must return a
//! configuration or an error naming the problem, never panic. Properties,
//! for whatever resolves:
//!
//! - `explain` and the replicator options of every database can be taken;
//! - every replica's canonical URL parses back to the location resolved;
//! - the options are ones `Replicator::open` accepts (at most 8 levels);
//! - resolving is deterministic (same text, same environment: same result).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use litevault::config::{Config, ParseContext};
use litevault::replica::ReplicaLocation;

fn env(k: &str) -> Option<String> {
    match k {
        "HOME" => Some("/home/fuzz".into()),
        "BUCKET" => Some("bucket".into()),
        "EMPTY" => Some(String::new()),
        "AWS_ACCESS_KEY_ID" => Some("id".into()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = ParseContext {
        file: "fuzz.yml".into(),
        cwd: Path::new("/fuzz/cwd"),
        env: &env,
        pid: 4242,
        expand_env: data.len().is_multiple_of(2),
    };
    let parsed = Config::parse(text, &ctx);
    let again = Config::parse(text, &ctx);
    match (&parsed, &again) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "not deterministic"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "not deterministic"),
        _ => panic!("resolving the same text twice gave a result and an error"),
    }
    let Ok(cfg) = parsed else {
        return;
    };
    let _ = cfg.explain();
    for db in &cfg.dbs {
        let opts = cfg.replicate_options(db, 4096);
        assert!(
            opts.retention.levels.len() <= 8,
            "a configuration the replicator refuses: {} levels",
            opts.retention.levels.len()
        );
        for r in &db.replicas {
            let back = ReplicaLocation::parse(&r.url)
                .unwrap_or_else(|e| panic!("canonical URL {:?} does not parse: {e}", r.url));
            assert_eq!(
                back, r.location,
                "canonical URL {:?} parses to another place",
                r.url
            );
        }
    }
});
