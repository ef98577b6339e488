//! Every resolved setting with its origin (`litevault config explain`).

use super::*;

pub(in crate::config) fn explain(cfg: &Config) -> Vec<ExplainEntry> {
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
    push("lease.wait".into(), d(cfg.lease.wait));
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
