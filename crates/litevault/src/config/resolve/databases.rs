//! The top level, logging, and each database.

use super::*;

impl Resolver<'_, '_> {
    pub(super) fn resolve(&mut self, raw: &RawConfig) -> Config {
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
            wait: Duration::ZERO,
        };
        if let Some(l) = &raw.lease {
            let v = self.take("lease.ttl", &l.value.ttl);
            lease.ttl = self.positive("lease.ttl", v, lease.ttl);
            if let Some((w, _)) = self.take("lease.wait", &l.value.wait) {
                lease.wait = w.0;
            }
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

    pub(super) fn logging(&mut self, raw: &RawConfig) -> LoggingConfig {
        let mut l = LoggingConfig {
            level: LogLevel::Info,
            format: LogFormat::Text,
            stderr: defaults::LOG_TO_STDERR,
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
                    let msg = format!("{s:?} is not a log type; use text, json or pretty");
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

    pub(super) fn db(
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

    pub(super) fn truncate(&mut self, key: &str, db: &RawDb, g: &RawConfig) -> TruncateThreshold {
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
}
